"""`redact`: stdin lines -> redacted lines on stdout.

A line that cannot be redacted is withheld (fail closed)."""

from __future__ import annotations

import argparse
import sys

from worker.cli.errors import CommandError


async def run(args: argparse.Namespace) -> int:
    import redact

    variables: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--var takes NAME=VALUE, got an argument of {len(item)} characters")
        variables[name] = value
    withheld = 0
    for n, line in enumerate(sys.stdin, 1):
        body = line.rstrip("\n")
        try:
            out = redact.redact_text(body, variables or None)
        except Exception as exc:
            withheld += 1
            print(f"error: line {n}: redaction failed ({type(exc).__name__}); line withheld", file=sys.stderr)
            continue
        sys.stdout.write(out + ("\n" if line.endswith("\n") else ""))
    sys.stdout.flush()
    return 1 if withheld else 0

"""The mypyc build of `redact` (scripts/build_native.py): current with its source, and the same output as
the plain-Python package on every line of both corpora and on random digit-heavy text."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import redact
from tests.support import REPO

CORPORA = [REPO / "tests" / "data" / "redaction_dev.jsonl", REPO / "tests" / "data" / "redaction_asr.jsonl"]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _lines() -> list[str]:
    lines: list[str] = []
    for path in CORPORA:
        if path.exists():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            lines += [str(r.get("text") or r.get("asr_text")) for r in rows]
    rng = random.Random(9605)
    words = [
        "five",
        "oh",
        "double",
        "call",
        "me",
        "at",
        "dot",
        "com",
        "card",
        "4111",
        "555",
        "0134",
        ",",
        "um",
    ]
    for _ in range(300):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))))
        lines.append("".join(rng.choice("0123456789 -.,()+x") for _ in range(rng.randint(5, 40))))
    return lines


def test_the_build_is_current_and_loaded_in_ci() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/build_native.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    if CI:  # the test command built it: a broken build must not pass as a silently slower redactor
        assert check.returncode == 0, check.stdout + check.stderr
        assert redact.compiled()
    if redact.compiled():
        assert check.returncode == 0, "compiled modules are stale: run scripts/build_native.py"


def test_compiled_and_plain_python_redact_alike(tmp_path: Path) -> None:
    if not redact.compiled():
        return  # nothing to compare: this process runs the plain package itself
    plain = tmp_path / "plain"
    shutil.copytree(REPO / "redact", plain / "redact", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    lines = _lines()
    (tmp_path / "in.json").write_text(json.dumps(lines))
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import redact; "
        "assert not redact.compiled(); "
        "print(json.dumps([redact.redact_text(t) for t in json.load(open(sys.argv[2]))]))"
    )
    # -S: no site-packages, so not the editable install's finder either; redact needs nothing from there.
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, str(plain), str(tmp_path / "in.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads(proc.stdout)
    got = [redact.redact_text(t) for t in lines]
    diffs = [(t, e, g) for t, e, g in zip(lines, expected, got, strict=True) if e != g]
    assert not diffs, diffs[:5]

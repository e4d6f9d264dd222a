"""`converse-worker` command line. Each subcommand lives in its own module; this file only parses.

Failures print one line `error: ...` to stderr and exit non-zero (2 for usage, 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

from worker.cli.errors import CommandError
from worker.config import add_settings

STORAGE = ("data-dir", "kek-file", "database-url", "object-store-url", "org-id", "log-format", "log-level")
ASR = ("model", "model-path", "language", "asr-beam", "asr-prompt", "asr-threads", "asr-mode")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="converse-worker", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="take WebRTC calls over WHIP, with admin API, health and metrics")
    add_settings(s)

    r = sub.add_parser("replay", help="run call fixtures through the pipeline")
    add_settings(r, STORAGE + ASR)
    r.add_argument("fixtures", nargs="+", help="audio file or directory of track files")
    r.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--realtime", action="store_true", help="pace input at real time")
    r.add_argument("--concurrency", type=int, default=1, help="fixtures replayed at once (one shared model)")

    c = sub.add_parser("call", help="send a fixture to a running worker over WHIP")
    c.add_argument("url", help="worker base URL or its /whip endpoint, e.g. http://127.0.0.1:8080")
    c.add_argument("fixture", nargs="?", help="the fixture (with --media-streams: the only argument)")
    c.add_argument("--token", default=None, help="bearer token (env CONVERSE_API_TOKEN)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--tail", type=float, default=1.5, help="seconds of silence sent after the fixture")
    c.add_argument("--sframe-key", default=None, help="base64url SFrame base key: send E2EE frames")
    c.add_argument("--kid", type=int, default=1, help="SFrame key id")
    c.add_argument("--suite", type=int, default=4, help="SFrame cipher suite (4 = AES_128_GCM_SHA256_128)")
    c.add_argument(
        "--counter-dir",
        default=None,
        help="where SFrame counters persist across runs (env CONVERSE_SFRAME_COUNTER_DIR; default "
        "<CONVERSE_DATA_DIR>/sframe-counters, else ~/.local/state/converse-worker/sframe-counters)",
    )
    c.add_argument(
        "--media-streams", default=None, metavar="WS_URL", help="stream as a telephony provider (mu-law)"
    )

    d = sub.add_parser("redact", help="redact PHI from stdin lines to stdout")
    d.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="runtime PHI variable")

    t = sub.add_parser("transcripts", help="stored (redacted) transcripts")
    tsub = t.add_subparsers(dest="action", required=True)
    tl = tsub.add_parser("list")
    add_settings(tl, STORAGE)
    tl.add_argument("--json", action="store_true")
    ts = tsub.add_parser("show")
    add_settings(ts, STORAGE)
    ts.add_argument("call_id")
    ts.add_argument("--json", action="store_true")
    for x in (tl, ts):
        x.add_argument("--token", default=None, help="bearer JWT with mfa (env CONVERSE_TOKEN); see `token`")

    e = sub.add_parser("export", help="unseal a track into a playable file")
    add_settings(e, STORAGE)
    e.add_argument("--call", required=True, dest="call_id")
    e.add_argument("--track", type=int, default=0)
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--format", choices=("ogg", "wav"), default=None, help="default: from the file suffix")
    e.add_argument("--json", action="store_true")
    e.add_argument("--token", default=None, help="bearer JWT with mfa (env CONVERSE_TOKEN)")

    k = sub.add_parser("keys", help="key-encryption keys")
    ksub = k.add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("rotate", "new KEK version; re-wrap every key it wraps (track, transcript text, TOTP)"),
        ("status", "KEK version, and per kind how many keys are on each version"),
    ):
        kk = ksub.add_parser(name, help=help_)
        add_settings(kk, STORAGE)
        kk.add_argument("--json", action="store_true")

    m = sub.add_parser("migrate", help="apply database schema migrations")
    add_settings(m, STORAGE)

    a = sub.add_parser("audit", help="tamper-evident audit log")
    asub = a.add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("verify", "check the log; exits non-zero on any finding"),
        ("checkpoint", "write a signed checkpoint now"),
        ("show", "the latest entries"),
        ("prove", "inclusion proof of one entry"),
        ("repair", "recreate append-only triggers that verify found missing (audited)"),
    ):
        aa = asub.add_parser(name, help=help_)
        add_settings(aa, STORAGE)
        aa.add_argument("--json", action="store_true")
        if name == "show":
            aa.add_argument("--limit", type=int, default=50)
        if name == "prove":
            aa.add_argument("seq", type=int)

    rt = sub.add_parser("retention", help="delete recordings and transcripts past the retention period")
    rsub = rt.add_subparsers(dest="action", required=True)
    rr = rsub.add_parser("run")
    add_settings(rr, STORAGE)
    rr.add_argument("--json", action="store_true")
    rr.add_argument(
        "--now", default=None, help="pretend it is this UTC time (ISO 8601), for tests and drills"
    )

    tk = sub.add_parser("token", help="identities for the embedded issuer")
    tksub = tk.add_subparsers(dest="action", required=True)
    roles = ("owner", "admin", "support", "viewer")
    ti = tksub.add_parser("issue", help="a short-lived JWT (mfa after a fresh TOTP code)")
    ti.add_argument("--user", required=True)
    ti.add_argument("--email", default=None, help="default: the enrolment's")
    ti.add_argument("--org", default=None, help="default: the enrolment's, else the caller's organisation")
    ti.add_argument("--role", default=None, choices=roles, help="default: the enrolment's")
    ti.add_argument("--totp", default=None, help="current TOTP code (required for enrolled users)")
    ti.add_argument("--ttl", type=int, default=900)
    te = tksub.add_parser("enroll", help="create a user's TOTP secret, with their organisation and role")
    te.add_argument("--user", required=True)
    te.add_argument("--email", default=None, help="shown in the authenticator app (default: the user id)")
    te.add_argument("--org", default=None, help="default: the caller's organisation")
    te.add_argument("--role", required=True, choices=roles)
    te.add_argument("--replace", action="store_true", help="replace an existing enrolment")
    for x in (ti, te):
        add_settings(x, STORAGE)
        x.add_argument("--json", action="store_true")
        x.add_argument("--token", default=None, help="caller's bearer JWT (env CONVERSE_TOKEN)")
    return p


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]]:
    """`worker.cli.<command>.run`, imported only when that command runs (`redact` loads no aiortc, no model).
    argparse has already refused any name that is not a subcommand."""
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = importlib.import_module(
        f"worker.cli.{args.command}"
    ).run
    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "log_format", None) is not None or args.command in ("serve", "call", "redact"):
        from worker.logs import configure

        configure(json=getattr(args, "log_format", "json") != "console", level=_level(args))
    try:
        return asyncio.run(_handler(args)(args))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback, no data
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 1


# The error trees whose messages carry ids, names, sizes and settings, never PHI, token or key material
# (STYLE.md practice 8): the CLI prints their own message. Anything else prints only its type.
KNOWN_ERRORS: Final = frozenset(
    {
        ("storage.errors", "StorageError"),
        ("worker.auth.identity", "IdentityError"),
        ("worker.auth.totp", "TotpError"),
        ("worker.auth.access", "AccessDeniedError"),
        ("worker.webrtc.e2ee", "E2eeError"),
        ("worker.webrtc.peer", "CallError"),
        ("worker.cli.call_client", "WhipClientError"),
        ("media.sframe", "SFrameError"),
        ("media.opus", "OpusError"),
        ("media.fixtures", "FixtureError"),
        ("media.asr_sched", "AsrError"),
        ("media.models", "ModelError"),
        ("media.opus_tap", "TapError"),
        ("builtins", "OSError"),
        ("builtins", "ValueError"),
    }
)


def error_line(exc: BaseException) -> str:
    """The one line `main` prints for an uncaught `exc` (by class, not by import: no module is loaded)."""
    if any((c.__module__, c.__qualname__) in KNOWN_ERRORS for c in type(exc).__mro__):
        line = " ".join(str(exc).split())
        if line:
            return line
    return f"unexpected {type(exc).__name__}"


def _level(args: argparse.Namespace) -> int:
    import logging

    name = str(getattr(args, "log_level", "info") or "info").upper()
    return int(getattr(logging, name, logging.INFO))

"""Compile the redaction package with mypyc, in place: the same typed source, about 1.6x faster.

Every final transcript and every log line goes through `redact`, so it is the one pure-Python hot path
worth compiling. The source stays the truth: the compiled modules (`redact/*.so`, git-ignored) are
rebuilt whenever a source file changes (a manifest of source hashes says when), and removed when the
build fails, so the package never runs stale code and falls back to plain Python without a compiler.

    python scripts/build_native.py           # build if any source changed (bootstrap and the tests call it)
    python scripts/build_native.py --check   # exit 1 if the compiled modules are missing or stale
    python scripts/build_native.py --clean   # remove them (plain Python)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "redact"
MANIFEST = PACKAGE / "_native.json"
GROUP = "redact._native"  # the shared support library lives inside the package, not at the top level
# logging.py imports structlog and runs per log event, not per character; __init__ only re-exports.
PURE = {"__init__.py", "logging.py"}


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.name not in PURE)


def fingerprint() -> dict[str, str]:
    import mypy.version

    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sources()}
    return {
        **files,
        "python": sys.version.split()[0],
        "mypyc": mypy.version.__version__,
        "abi": str(sysconfig.get_config_var("EXT_SUFFIX")),
    }


def built() -> list[Path]:
    return sorted(PACKAGE.glob("*.so"))


def is_fresh() -> bool:
    if not MANIFEST.exists() or not built():
        return False
    try:
        return bool(json.loads(MANIFEST.read_text()) == fingerprint())
    except (OSError, ValueError):
        return False


def clean() -> None:
    for p in built():
        p.unlink()
    MANIFEST.unlink(missing_ok=True)


_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="redact-native",
    ext_modules=mypycify(sys.argv[1:], group_name={group!r}, opt_level="3"),
    script_args=["build_ext", "--inplace", "--build-temp", "build-native/temp"],
)
"""


def build() -> bool:
    """Compile in a scratch copy, then move the modules in: a failed build leaves plain Python behind."""
    clean()
    # The hashes of the source as copied, not as it is after the build: an edit during the build must
    # leave the modules stale, not mark old code current.
    fp = fingerprint()
    with tempfile.TemporaryDirectory(prefix="converse-native-") as tmp:
        work = Path(tmp)
        shutil.copytree(PACKAGE, work / "redact", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        (work / "setup_native.py").write_text(_SETUP.format(group=GROUP))
        names = [f"redact/{p.name}" for p in sources()]
        proc = subprocess.run(
            [sys.executable, "setup_native.py", *names],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "MYPY_FORCE_COLOR": "0"},
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(
                f"build_native: mypyc build failed, redact stays plain Python: {tail[0][:200]}",
                file=sys.stderr,
            )
            return False
        for so in (work / "redact").glob("*.so"):
            # Copy beside, then rename: a process that has the old module loaded keeps its (unlinked)
            # file; overwriting it in place crashes that process (seen: segfaults in concurrent tests).
            part = PACKAGE / f".{so.name}.part"
            shutil.copy2(so, part)
            os.replace(part, PACKAGE / so.name)
    MANIFEST.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if missing or stale")
    mode.add_argument("--clean", action="store_true", help="remove the compiled modules")
    mode.add_argument("--force", action="store_true", help="rebuild even if fresh")
    args = p.parse_args(argv)
    if args.clean:
        clean()
        return 0
    if args.check:
        fresh = is_fresh()
        print(
            "build_native: "
            + ("compiled modules are current" if fresh else "compiled modules missing or stale")
        )
        return 0 if fresh else 1
    if is_fresh() and not args.force:
        return 0
    return 0 if build() else 1


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by tests: running the CLI, PHI canaries, and the CI rule for missing tools."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip locally when a tool/server is missing; in CI a missing one is a failure, never a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


def cli_env(data_dir: Path, kek: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSE_")}
    env.update(
        CONVERSE_DATA_DIR=str(data_dir),
        CONVERSE_KEK_FILE=str(kek),
        CONVERSE_ASR_THREADS="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    *,
    check: bool = True,
    timeout: float = 300,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"converse-worker {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def written_forms(value: str) -> set[str]:
    """Forms of a PHI value that must not appear in any file: as given, digits only, digit groups."""
    forms = {value, value.lower()}
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 7:
        forms.add(digits)
        forms.add("-".join([digits[:3], digits[3:6], digits[6:]]))
        forms.add(" ".join(digits[i : i + 4] for i in range(0, len(digits), 4)))
    return {f for f in forms if f}


def scan_tree(root: Path, needles: Iterable[str]) -> list[str]:
    """Every (file, needle) where a needle occurs in a file under root, as UTF-8 or UTF-16 bytes."""
    hits: list[str] = []
    pats = []
    for n in needles:
        for enc in ("utf-8", "utf-16-le"):
            pats.append((n, n.encode(enc)))
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        low = data.lower()
        for n, p in pats:
            if n.isalpha() and len(n) < 8 and b"\x00" not in p:  # UTF-16 zero bytes do not occur by chance
                # A short name ("Doe") turns up by chance in ciphertext (~10% of two sealed tracks hold
                # "doe" in some case): count it as a whole word with readable bytes around it only.
                pat = rb"(?<![a-z0-9])" + re.escape(p.lower()) + rb"(?![a-z0-9])"
                if any(_readable(low[max(0, m.start() - 4) : m.end() + 4]) for m in re.finditer(pat, low)):
                    hits.append(f"{path.relative_to(root)}: {n!r}")
            elif p in data or p.lower() in low:
                hits.append(f"{path.relative_to(root)}: {n!r}")
    return hits


def _readable(chunk: bytes) -> bool:
    return all(0x20 <= b <= 0x7E or b in b"\t\r\n" for b in chunk)


async def replay_in_process(transcriber: Any, transcripts: Any, tmp_path: Path) -> tuple[Any, Any]:
    """Replay fixtures/example_call.flac through a real Engine with `transcriber` and `transcripts` (memory
    recordings, a fresh key file): (the call summary, the engine's Metrics)."""
    from media.asr import AsrScheduler
    from media.fixtures import load_fixture
    from storage.keys import LocalKeyFile
    from storage.memory import MemoryRecordingStore
    from worker.calls.engine import Engine, EngineConfig
    from worker.calls.replay import replay_one
    from worker.metrics import Metrics

    metrics = Metrics()
    sched = AsrScheduler(transcriber, workers=1)
    engine = Engine(
        transcripts=transcripts,
        recordings=MemoryRecordingStore(),
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=sched,
        metrics=metrics,
        config=EngineConfig(flush_interval_s=0.05),
    )
    try:
        fixture = load_fixture(FIXTURES / "example_call.flac")
        summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    finally:
        await sched.aclose()
    return summary, metrics

"""The speech benchmarks run as written: each in its `--quick` mode (real model, real-time replay of two
short bench calls), ending in one JSON line and writing its JSON and PNG. ~1 minute each, so slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(name: str, out: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    result: dict[str, object] = json.loads(last)
    assert (out / f"{name}_quick.json").is_file()
    assert (out / f"{name}_quick.png").is_file()
    return result


@pytest.mark.slow
def test_latency_quick(tmp_path: Path) -> None:
    result = run_bench("latency", tmp_path)
    assert result["benchmark"] == "latency" and result["quick"] is True
    for mode in ("short", "padded"):
        stats = result[mode]["stats"]  # type: ignore[index]
        assert stats["n"] >= 5 and stats["p50"] > 0  # the two calls hold 6 utterances
        assert result[mode]["missed"] == 0 and result[mode]["spurious_finals"] == 0  # type: ignore[index]


@pytest.mark.slow
def test_capacity_quick(tmp_path: Path) -> None:
    result = run_bench("capacity", tmp_path)
    assert result["benchmark"] == "capacity" and result["quick"] is True
    sweeps = result["sweeps"]
    assert isinstance(sweeps, dict) and sweeps["short"][0]["n"] == 1
    assert all(row["frames_lost"] == 0 for rows in sweeps.values() for row in rows)
    assert set(result["largest_n"]) == {"short", "padded"}  # type: ignore[arg-type]


@pytest.mark.slow
def test_models_quick(tmp_path: Path) -> None:
    result = run_bench("models", tmp_path)
    assert result["benchmark"] == "models" and result["quick"] is True
    assert result["models"] == ["tiny.en", "base"]  # CI installs the base extra (bootstrap --test)
    table = result["table"]
    assert isinstance(table, list) and len(table) == 3
    assert all(row["phi_leaked"] == 0 and 0 <= row["wer"] < 0.6 for row in table)
    assert table[0]["ttf_p50_s"] > 0 and all(row["cpu_per_utterance_s"] > 0 for row in table)

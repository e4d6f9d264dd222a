"""The soak run (scripts/soak.py) in the slow set: real calls against one `serve` for SOAK_MINUTES
(default 10, what CI runs) at SOAK_CONCURRENCY (default 3); every check of the script must pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "3"))


@pytest.mark.slow
@pytest.mark.timeout(int(MINUTES * 60) + 900)  # the run, warm-up calls, idle measurements and shutdown
def test_soak() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "soak.py"),
            "--minutes",
            str(MINUTES),
            "--concurrency",
            str(CONCURRENCY),
        ],
        capture_output=True,
        text=True,
        timeout=MINUTES * 60 + 840,
        cwd=REPO,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    assert proc.returncode == 0, json.dumps(report["checks"]) + "\n" + proc.stdout[-4000:]
    checks = report["checks"]
    assert checks["frames_lost"] and report["frames_lost"] == 0
    assert checks["calls_ok"] and checks["transcripts"] and checks["no_phi"]
    assert checks["rss_growth"] and report["rss_mb"]["growth"] < 50, report["rss_mb"]
    assert checks["fds"], report["fds"]
    assert report["calls"] >= CONCURRENCY * MINUTES  # calls really ran all along

"""benchmarks/report.py on canned result JSON (no benchmark runs): every figure and command is on the page."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "loadavg_at_start": [0.5, 0.4, 0.3],
    "loadavg_at_end": [1.0, 0.5, 0.3],
}
STATS = {"n": 6, "p50": 0.61, "p95": 0.93, "p99": 1.01, "max": 1.02}
STEP = {
    "n": 4,
    "media_only": False,
    "ttf": STATS,
    "server_cpu_pct_per_call": 9.5,
    "server_loop_thread_pct_per_call": 4.1,
    "rss_per_call_mb": 6.2,
    "frames_lost": 0,
    "healthz_rtt_ms": {"p99": 7.7},
    "client_cpu_pct_per_call": 6.6,
    "other_load_cores": 0.12,
}
CANNED = {
    "sframe_bench": {
        "suites": {"AES_128_GCM_SHA256_128": {"frames_per_s": 684676, "ratio_vs_raw_aesgcm": 1.578}},
        "machine": {"cpu": "Test CPU"},
    },
    "redaction": {
        "results": [{"name": "converse redact", "accuracy": 1.0, "lines_per_s": 18223.8}],
        "presidio": None,
    },
    "vad_bench_quick": {
        "command": "benchmarks/vad_bench.py --quick",
        "us_per_frame": {"decode": 87.0, "resample": 26.3, "vad": 10.7, "seal": 2.4},
        "pct_core_per_call": {"decode": 0.435, "resample": 0.131, "vad": 0.054, "seal": 0.012},
        "stage_sum_pct_core_per_call": 0.632,
        "machine": MACHINE,
    },
    "latency_quick": {
        "short": {"stats": STATS, "wer": 0.05},
        "padded": {"stats": {**STATS, "p50": 2.9}, "wer": 0.09},
        "p50_ratio_padded_over_short": 4.75,
        "machine": MACHINE,
    },
    "capacity_quick": {
        "largest_n": {"short": 2, "padded": 0},
        "cpu_per_utterance_s": {"short": 0.47, "padded": 1.33},
        "cpu_gain_padded_over_short": 2.81,
        "machine": MACHINE,
    },
    "e2e_capacity_quick": {
        "command": "benchmarks/e2e_capacity.py --quick",
        "capacity": 4,
        "steps": [STEP],
        "media_only": {**STEP, "media_only": True, "server_cpu_pct_per_call": 7.15},
        "profile": {"n": 8, "samples": 100, "self_pct": [["decode (media/opus.py:60)", 12.5]]},
        "machine": MACHINE,
    },
}
FIGURES = (
    "SFrame protect AES_128_GCM_SHA256_128",
    "converse redact: exact-line accuracy",
    "Presidio comparison",
    "decode: CPU per 20 ms frame",
    "decode+resample+VAD+seal per call",
    "time to final p95, one call (short window)",
    "p50 ratio padded / short",
    "ASR capacity in one process (short): calls within p95 1.5 s",
    "end-to-end WebRTC capacity: calls within p95 1.5 s, no frame lost",
    "N=4: time to final p50 / p95 / p99",
    "N=4: server CPU per call (all threads / loop thread)",
    "media path only (N=4, no speech): server CPU per call",
)
COMMANDS = (
    ".venv/bin/python benchmarks/sframe_bench.py",
    ".venv/bin/python benchmarks/redaction_bench.py --repeat 3",
    ".venv/bin/python benchmarks/vad_bench.py --quick",
    ".venv/bin/python benchmarks/latency.py --quick",
    ".venv/bin/python benchmarks/capacity.py --quick",
    ".venv/bin/python benchmarks/e2e_capacity.py --quick",
)


def test_report_from_canned_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name, obj in CANNED.items():
        (results / f"{name}.json").write_text(json.dumps(obj))
        (results / f"{name}.png").write_bytes(PNG)
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/report.py",
            "--quick",
            "--from-results",
            "--results",
            str(results),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["failed"] == []
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for fig in FIGURES:
        assert fig in page, fig
    for cmd in COMMANDS:
        assert f"<code>{cmd}</code>" in page, cmd
    assert page.count("data:image/png;base64,") == len(CANNED)  # every plot embedded: one self-contained file
    assert (
        "Test CPU" not in page.split("<h2>Figures</h2>")[0] or "cores" in page
    )  # the machine table is there
    for key in ("cores", "memory", "python", "packages", "aiortc"):
        assert f"<th>{key}</th>" in page or key in page
    assert "decode (media/opus.py:60)" in page  # the e2e profile's hot spots
    assert "0.5 0.4 0.3 -&gt; 1.0 0.5 0.3" in page  # host load while each figure ran


def test_report_marks_missing_results(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/report.py",
            "--from-results",
            "--results",
            str(tmp_path),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out.read_text()
    assert page.count("not run") >= 6
    assert "<code>.venv/bin/python benchmarks/e2e_capacity.py</code>" in page

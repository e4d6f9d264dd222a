"""One HTML page with every benchmark's figures, plots, commands and the machine they ran on.

Usage: .venv/bin/python benchmarks/report.py [--quick] [--from-results] [--results DIR] [--out FILE]

Runs each benchmark below one after the other (they would compete for the cores side by side), in its
quick mode with `--quick` (under five minutes in all), then reads the JSON each wrote under
benchmarks/results/ and writes benchmarks/results/report.html: the machine (CPU model, cores, memory,
Python, package versions), a table of figures (each with its target, the exact command that produced it,
the load on the host while it ran and the result file), and every PNG, embedded (the page is one file).
`--from-results` runs nothing and reports the JSON already there (a benchmark whose file of the chosen
mode is missing falls back to the other mode's file, marked as such, or shows as not run).

Benchmarks: SFrame throughput (sframe_bench), redaction vs Presidio (redaction_bench; Presidio is
optional and the report says when it was not installed), per-frame media-path CPU (vad_bench), ASR time to
final (latency), ASR capacity in one process (capacity), end-to-end WebRTC capacity (e2e_capacity).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = ".venv/bin/python"
PACKAGES = (
    "aiortc",
    "av",
    "aioice",
    "ctranslate2",
    "faster-whisper",
    "numpy",
    "cryptography",
    "webrtcvad-wheels",
    "presidio-analyzer",
    "matplotlib",
    "aiohttp",
)
TIMEOUT_S = 3600

Row = tuple[str, str, str, bool | None]  # figure, value, target, met (None: no target)


def _g(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        try:
            d = d[p]
        except (KeyError, IndexError, TypeError):
            return default
    return d


def _fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def _lt(v: Any, limit: float) -> bool | None:
    return None if v is None else bool(v < limit)


# -- what each benchmark's JSON says --------------------------------------------------------------------


def rows_sframe(d: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name in ("AES_128_GCM_SHA256_128", "AES_128_CTR_HMAC_SHA256_80"):
        s = _g(d, "suites", name)
        if s:
            out.append(
                (
                    f"SFrame protect {name}",
                    _fmt(s.get("frames_per_s"), " frames/s", 0),
                    "> 200,000 frames/s",
                    _lt(200_000, s.get("frames_per_s") or 0),
                )
            )
            out.append(
                (f"SFrame protect {name} vs raw AES-GCM", _fmt(s.get("ratio_vs_raw_aesgcm"), "x"), "", None)
            )
    return out


def rows_redaction(d: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for r in d.get("results", []):
        out.append((f"{r['name']}: exact-line accuracy", _fmt(r.get("accuracy", 0) * 100, " %", 1), "", None))
        out.append((f"{r['name']}: throughput", _fmt(r.get("lines_per_s"), " lines/s", 0), "", None))
    if d.get("speedup_vs_presidio"):
        out.append(("redaction speed-up vs Presidio", _fmt(d["speedup_vs_presidio"], "x", 1), "", None))
    else:
        out.append(("Presidio comparison", "skipped: presidio-analyzer not installed", "", None))
    return out


def rows_vad(d: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for stage, us in (d.get("us_per_frame") or {}).items():
        pct = _g(d, "pct_core_per_call", stage)
        out.append(
            (f"{stage}: CPU per 20 ms frame", f"{_fmt(us, ' us')} ({_fmt(pct, ' % core/call', 3)})", "", None)
        )
    total = d.get("stage_sum_pct_core_per_call")
    out.append(
        ("decode+resample+VAD+seal per call", _fmt(total, " % of a core", 2), "< 3 %", _lt(total, 3.0))
    )
    return out


def rows_latency(d: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for mode in ("short", "padded"):
        s = _g(d, mode, "stats") or {}
        tgt = mode == "short"
        out.append(
            (
                f"time to final p50, one call ({mode} window)",
                _fmt(s.get("p50"), " s"),
                "< 0.8 s" if tgt else "",
                _lt(s.get("p50"), 0.8) if tgt else None,
            )
        )
        out.append(
            (
                f"time to final p95, one call ({mode} window)",
                _fmt(s.get("p95"), " s"),
                "< 1.2 s" if tgt else "",
                _lt(s.get("p95"), 1.2) if tgt else None,
            )
        )
        out.append((f"time to final p99, one call ({mode} window)", _fmt(s.get("p99"), " s"), "", None))
        out.append((f"WER ({mode} window)", _fmt((_g(d, mode, "wer") or 0) * 100, " %", 1), "", None))
    out.append(("p50 ratio padded / short", _fmt(d.get("p50_ratio_padded_over_short"), "x"), "", None))
    return out


def rows_models(d: dict[str, Any]) -> list[Row]:
    """One row per configuration (benchmarks/models.py); 'met' = no PHI item leaked."""
    out: list[Row] = []
    for c in d.get("configs") or []:
        value = (
            f"WER {_fmt(c['wer'] * 100, ' %', 1)}, numbers {_fmt(c['number_accuracy'] * 100, ' %', 0)}, "
            f"leaks {c['phi_leaked']}/{c['phi_items']}, CPU/utt {_fmt(c['cpu_per_utterance_s'], ' s', 3)}, "
            f"ttf p50/p95 {_fmt(c['ttf_p50_s'], ' s')}/{_fmt(c['ttf_p95_s'], ' s')}, "
            f"{_fmt(c['calls_per_core'], ' calls/core', 0)}"
        )
        out.append((c["label"], value, "0 leaks", c["phi_leaked"] == 0))
    return out


def rows_capacity(d: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for mode in ("short", "padded"):
        n = _g(d, "largest_n", mode)
        tgt = mode == "short"
        out.append(
            (
                f"ASR capacity in one process ({mode}): calls within p95 1.5 s",
                _fmt(n),
                ">= 16" if tgt else "",
                (n or 0) >= 16 if tgt else None,
            )
        )
        out.append(
            (f"ASR CPU per utterance ({mode})", _fmt(_g(d, "cpu_per_utterance_s", mode), " s", 3), "", None)
        )
    out.append(("ASR CPU gain padded / short", _fmt(d.get("cpu_gain_padded_over_short"), "x"), "", None))
    return out


def rows_e2e(d: dict[str, Any]) -> list[Row]:
    cap = d.get("capacity")
    out: list[Row] = [
        (
            "end-to-end WebRTC capacity: calls within p95 1.5 s, no frame lost",
            _fmt(cap),
            ">= 16",
            (cap or 0) >= 16,
        )
    ]
    for s in d.get("steps", []):
        t = s.get("ttf") or {}
        out.append(
            (
                f"N={s['n']}: time to final p50 / p95 / p99",
                f"{_fmt(t.get('p50'), ' s')} / {_fmt(t.get('p95'), ' s')} / {_fmt(t.get('p99'), ' s')}",
                "p95 < 1.5 s",
                _lt(t.get("p95"), 1.5),
            )
        )
        out.append(
            (
                f"N={s['n']}: server CPU per call (all threads / loop thread)",
                f"{_fmt(s.get('server_cpu_pct_per_call'), ' %', 1)} / "
                f"{_fmt(s.get('server_loop_thread_pct_per_call'), ' %', 1)}",
                "",
                None,
            )
        )
        out.append(
            (
                f"N={s['n']}: RSS per call, frames lost, /healthz p99",
                f"{_fmt(s.get('rss_per_call_mb'), ' MB', 1)}, {_fmt(s.get('frames_lost'))}, "
                f"{_fmt(_g(s, 'healthz_rtt_ms', 'p99'), ' ms', 1)}",
                "< 15 MB, 0",
                (s.get("rss_per_call_mb") or 0) < 15 and s.get("frames_lost") == 0,
            )
        )
        out.append(
            (
                f"N={s['n']}: clients' CPU per call, other load on the host",
                f"{_fmt(s.get('client_cpu_pct_per_call'), ' %', 1)}, "
                f"{_fmt(s.get('other_load_cores'), ' cores')}",
                "",
                None,
            )
        )
    m = d.get("media_only") or {}
    if m:
        pct = m.get("server_cpu_pct_per_call")
        out.append(
            (
                f"media path only (N={m.get('n')}, no speech): server CPU per call",
                _fmt(pct, " %", 2),
                "< 3 %",
                _lt(pct, 3.0),
            )
        )
        out.append(
            (
                f"media path only (N={m.get('n')}): RSS per call",
                _fmt(m.get("rss_per_call_mb"), " MB", 1),
                "< 15 MB",
                _lt(m.get("rss_per_call_mb"), 15.0),
            )
        )
    b = d.get("media_only_baseline") or {}
    if b and d.get("media_gain_batching"):
        gain = d["media_gain_batching"]
        out.append(
            (
                f"media path before batching (a tick per {b.get('speech_batch_seconds')} s), same run",
                _fmt(b.get("server_cpu_pct_per_call"), " %", 2) + f" ({gain}x the batched)",
                "",
                None,
            )
        )
    return out


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    script: str
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    full_name: str  # results/<name>.json and .png
    quick_name: str
    rows: Callable[[dict[str, Any]], list[Row]]
    plot_kind: str

    def name(self, quick: bool) -> str:
        return self.quick_name if quick else self.full_name

    def command(self, quick: bool) -> str:
        return " ".join([PY, f"benchmarks/{self.script}", *(self.quick_args if quick else self.full_args)])


BENCHES = (
    Bench(
        "sframe",
        "SFrame seal/unseal throughput",
        "sframe_bench.py",
        (),
        (),
        "sframe_bench",
        "sframe_bench",
        rows_sframe,
        "throughput",
    ),
    Bench(
        "redaction",
        "Redaction accuracy and speed vs Presidio",
        "redaction_bench.py",
        (),
        ("--repeat", "3"),
        "redaction",
        "redaction",
        rows_redaction,
        "accuracy / throughput",
    ),
    Bench(
        "vad",
        "Media path per frame (decode, resample, VAD, seal)",
        "vad_bench.py",
        (),
        ("--quick",),
        "vad_bench",
        "vad_bench_quick",
        rows_vad,
        "per-stage CPU",
    ),
    Bench(
        "latency",
        "ASR time to final, one call",
        "latency.py",
        (),
        ("--quick",),
        "latency",
        "latency_quick",
        rows_latency,
        "latency distribution",
    ),
    Bench(
        "models",
        "Speech models: WER, numbers, PHI, CPU, time to final",
        "models.py",
        (),
        ("--quick",),
        "models",
        "models_quick",
        rows_models,
        "WER against CPU per utterance",
    ),
    Bench(
        "capacity",
        "ASR capacity in one process (replay)",
        "capacity.py",
        (),
        ("--quick",),
        "capacity",
        "capacity_quick",
        rows_capacity,
        "capacity curve",
    ),
    Bench(
        "e2e",
        "End-to-end WebRTC capacity (one serve process)",
        "e2e_capacity.py",
        (),
        ("--quick",),
        "e2e_capacity",
        "e2e_capacity_quick",
        rows_e2e,
        "capacity curve, CPU and memory per call",
    ),
)


# -- machine --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    mem = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_report": " ".join(load) if load else "n/a",
        "packages": versions,
    }


# -- running ------------------------------------------------------------------------------------------------


def run_bench(b: Bench, quick: bool, results: Path) -> dict[str, Any]:
    cmd = b.command(quick)
    argv = [sys.executable, f"benchmarks/{b.script}", *(b.quick_args if quick else b.full_args)]
    if results.resolve() != RESULTS.resolve() and b.key not in ("sframe",):
        argv += ["--out", str(results)]  # sframe_bench always writes benchmarks/results
    print(f"running: {cmd}", flush=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        ok, tail = False, f"timed out after {TIMEOUT_S} s"
    wall = round(time.monotonic() - t0, 1)
    print(f"  {'done' if ok else 'FAILED'} in {wall} s", flush=True)
    return {"ran": True, "ok": ok, "wall_s": wall, "tail": "" if ok else tail}


def load_result(b: Bench, quick: bool, results: Path) -> tuple[dict[str, Any] | None, str, bool]:
    """(JSON, name used, whether it is the other mode's file)."""
    for name, other in ((b.name(quick), False), (b.name(not quick), True)):
        path = results / f"{name}.json"
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                return json.loads(path.read_text()), name, other and name != b.name(quick)
    return None, b.name(quick), False


# -- HTML ---------------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#222}
h1{font-size:24px}h2{font-size:19px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}
code{font-size:12px;background:#f6f6f6;padding:1px 3px}
.met{color:#0a7a0a;font-weight:600}.miss{color:#b00020;font-weight:600}.note{color:#666;font-size:13px}
img{max-width:100%;border:1px solid #eee;margin:8px 0}.warn{background:#fff4e5;padding:6px 10px}
pre{background:#f6f6f6;padding:8px;font-size:12px;white-space:pre-wrap}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _loadavg(d: dict[str, Any]) -> str:
    m: dict[str, Any] = d["machine"] if isinstance(d.get("machine"), dict) else {}
    a, b = m.get("loadavg_at_start"), m.get("loadavg_at_end")
    if not a and not b:
        return "n/a"
    return " -> ".join(" ".join(f"{x:.1f}" for x in v) for v in (a, b) if v)


def render(quick: bool, results: Path, runs: dict[str, dict[str, Any]], from_results: bool) -> str:
    e = html.escape
    mach = machine()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    presidio = importlib.util.find_spec("presidio_analyzer") is not None
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Converse media worker: benchmark report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Converse media worker: benchmark report</h1>",
        f"<p class='note'>Generated {e(now)} by <code>{e(PY)} benchmarks/report.py"
        f"{' --quick' if quick else ''}{' --from-results' if from_results else ''}</code> "
        f"({'quick modes' if quick else 'full modes'}). "
        "Each figure below names the command that produced it; "
        "run it from the repository root. These hosts are shared: the load average beside each figure is the "
        "host's load while it ran; compare ratios measured in one run rather than absolute times across runs."
        "</p>",
        "<h2>Machine</h2><table>",
        *(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in mach.items() if k != "packages"),
        "<tr><th>packages</th><td>"
        + ", ".join(f"{e(k)} {e(v)}" for k, v in mach["packages"].items())
        + "</td></tr></table>",
    ]
    if not presidio:
        parts.append(
            "<p class='warn'>presidio-analyzer is not installed: the redaction benchmark reports this "
            "project's redactor only (install the <code>bench</code> extra to compare).</p>"
        )
    table = [
        "<h2>Figures</h2><table><tr><th>benchmark</th><th>figure</th><th>value</th><th>target</th>"
        "<th>command</th><th>host load (1/5/15 min)</th><th>result</th></tr>"
    ]
    sections = []
    for b in BENCHES:
        d, name, other = load_result(b, quick, results)
        run = runs.get(b.key, {})
        cmd = (d or {}).get("command")
        cmd = f"{PY} {cmd}" if cmd and not cmd.startswith(PY) else (cmd or b.command(name == b.quick_name))
        anchor = f"b-{b.key}"
        sec = [f"<h2 id='{anchor}'>{e(b.title)}</h2>", f"<p>Command: <code>{e(cmd)}</code>"]
        if run.get("ran"):
            sec.append(f" &middot; ran in {run['wall_s']} s for this report")
        sec.append("</p>")
        if other:
            sec.append(
                f"<p class='warn'>No {'quick' if quick else 'full'} result: showing {e(name)}.json.</p>"
            )
        if run.get("ran") and not run.get("ok"):
            sec.append(f"<p class='warn'>The run failed; its output ends:</p><pre>{e(run['tail'])}</pre>")
        if d is None:
            sec.append("<p class='warn'>No result file: not run.</p>")
            table.append(
                f"<tr><td><a href='#{anchor}'>{e(b.title)}</a></td><td colspan='2'>not run</td><td></td>"
                f"<td><code>{e(cmd)}</code></td><td></td><td></td></tr>"
            )
        else:
            try:
                rows = b.rows(d)
            except Exception as exc:  # a changed schema shows as such, not as a crashed report
                rows = [("(figures unreadable)", f"{type(exc).__name__}: {exc}", "", None)]
            for fig, value, target, met in rows:
                cls = "" if met is None else (" class='met'" if met else " class='miss'")
                mark = "" if met is None else (" &#10003;" if met else " &#10007;")
                table.append(
                    f"<tr><td><a href='#{anchor}'>{e(b.title)}</a></td><td>{e(fig)}</td>"
                    f"<td{cls}>{e(value)}{mark}"
                    f"</td><td>{e(target)}</td><td><code>{e(cmd)}</code></td><td>{e(_loadavg(d))}</td>"
                    f"<td>{e(name)}.json</td></tr>"
                )
            png = results / f"{name}.png"
            if png.exists():
                sec.append(f"<p class='note'>{e(b.plot_kind)}:</p>{_img(png)}")
            else:
                sec.append("<p class='note'>no plot (matplotlib missing when it ran?)</p>")
            if b.key == "e2e" and d.get("profile"):
                p = d["profile"]
                sec.append(
                    f"<p>py-spy, worker at N={p['n']} ({p['samples']} samples), top self time:</p><table>"
                    "<tr><th>function</th><th>% of samples</th></tr>"
                )
                sec += [f"<tr><td><code>{e(f)}</code></td><td>{v}</td></tr>" for f, v in p["self_pct"][:10]]
                sec.append("</table>")
        sections.append("".join(sec))
    table.append("</table>")
    parts += table + sections + ["</body></html>"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark in its quick mode (< 5 min)")
    parser.add_argument("--from-results", action="store_true", help="run nothing; report the JSON there")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the benchmark JSON/PNG are")
    parser.add_argument("--out", type=Path, help="the HTML file (default RESULTS/report.html)")
    parser.add_argument(
        "--only", help="comma-separated benchmark keys to run: " + ",".join(b.key for b in BENCHES)
    )
    args = parser.parse_args(argv)
    out = args.out or args.results / "report.html"
    runs: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    if not args.from_results:
        only = set(args.only.split(",")) if args.only else {b.key for b in BENCHES}
        for b in BENCHES:
            if b.key in only:
                runs[b.key] = run_bench(b, args.quick, args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(args.quick, args.results, runs, args.from_results))
    failed = [k for k, r in runs.items() if not r["ok"]]
    print(
        f"wrote {out} in {time.monotonic() - t0:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    print(
        json.dumps({"report": str(out), "ran": {k: r["wall_s"] for k, r in runs.items()}, "failed": failed})
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

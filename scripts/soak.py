#!/usr/bin/env python3
"""Soak test: real WHIP calls against one `serve` process, continuously, for a given time.

    python scripts/soak.py --minutes 10 --concurrency 3            # starts its own serve (temp data dir)
    python scripts/soak.py --url http://127.0.0.1:8080 --pid 1234 \\
        --data-dir ./converse-data --kek-file ~/.config/converse-worker/kek.json --token $TOKEN

Each call is a `converse-worker call` client process sending a fixture in real time (fixtures rotate).
Checks, each a key of "checks" in the JSON printed at the end (exit 1 if any is false):
- frames_lost: every call ended "ended" with 0 frames lost and received == sealed == sent;
- transcripts: every call's stored transcript holds at least --min-word-recall (0.8) of the fixture's
  content words (fixture.json "expected.content_words"; tiny.en mishears one now and then on the live path);
- no_phi: no stored transcript holds the PHI the fixture declares (fixture.json "expected.phi", with
  digit-window and spoken-digit forms, see tests/phi_sweep.py), and at the end a sweep of the data directory
  and the serve log finds none either. (Call variables such as names are not checked: WHIP calls carry no
  variables, so the worker cannot know them; tests/test_phi_sweep.py tracks that gap.)
- rss_growth: resident memory of the server under load at the end of the run (median of the samples of
  its last minute) minus the same at the end of the warm-up (--warmup-minutes of the run, at full
  concurrency: the allocator's per-thread arenas fill up under concurrent load, not during one call),
  < --max-rss-growth-mb; the idle RSS after the run is reported too;
- fds: open file descriptors of the server, idle after the run, at most --fd-slack above the idle baseline.
Server numbers come from /proc/<pid>/status and /proc/<pid>/fd (Linux), sampled every --sample-s seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.phi_sweep import PhiNeedles, scan_text, sweep  # noqa: E402  (needs the repo on sys.path)

DEFAULT_FIXTURES = ("fixtures/example_call.flac", "fixtures/call_phi")
DEFAULT_WORDS = {"example_call.flac": ["appointment", "tuesday"]}


@dataclass
class Fixture:
    path: Path
    words: list[str]
    needles: PhiNeedles
    seconds: float = 0.0  # how long one call of it takes, measured by the warm-up call

    @classmethod
    def load(cls, path: Path) -> Fixture:
        spec: dict[str, Any] = {}
        if path.is_dir() and (path / "fixture.json").exists():
            spec = json.loads((path / "fixture.json").read_text())
        expected = spec.get("expected", {})
        words = [w.lower() for w in expected.get("content_words", DEFAULT_WORDS.get(path.name, []))]
        return cls(path, words, PhiNeedles.of(expected.get("phi", [])))


@dataclass
class Stats:
    calls: int = 0
    failed: list[str] = field(default_factory=list)
    frames_sent: int = 0
    frames_lost: int = 0
    transcript_failures: list[str] = field(default_factory=list)
    words_expected: int = 0
    words_missing: int = 0
    phi_hits: list[str] = field(default_factory=list)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss bytes, fds)


def proc_usage(pid: int) -> tuple[int, int]:
    """(resident bytes, open fds) of a process, from /proc."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def base_env(data_dir: Path, kek: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSE_")}
    env.update(
        CONVERSE_DATA_DIR=str(data_dir),
        CONVERSE_KEK_FILE=str(kek),
        CONVERSE_API_TOKEN=token,
        CONVERSE_LOOPBACK_ONLY="true",
        CONVERSE_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_serve(
    workdir: Path, env: dict[str, str], asr_threads: str | None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    env = dict(env, CONVERSE_HTTP_PORT="0")
    if asr_threads:
        env["CONVERSE_ASR_THREADS"] = asr_threads
    log = workdir / "serve.log"
    with open(log, "wb") as fh:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "serve"], env=env, cwd=REPO, stdout=fh, stderr=fh
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        m = re.search(r"serving on (http://[0-9.]+:\d+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1), log
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not start in 120 s")


async def run_cli(args: list[str], env: dict[str, str], limit_s: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", *args, env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "", "timeout"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def one_call(
    url: str, fx: Fixture, env: dict[str, str], token: str, stats: Stats, check: bool, min_recall: float
) -> None:
    # "--token=": a generated token may start with "-", which argparse would take for an option.
    code, out, err = await run_cli(["call", url, str(fx.path), "--json", f"--token={token}"], env, 600)
    stats.calls += 1
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        stats.failed.append(f"{fx.path.name}: client exit {code}: {err.strip().splitlines()[-1:]}")
        return
    server = result.get("server") or {}
    sent = sum(result.get("frames_sent", []))
    stats.frames_sent += sent
    stats.frames_lost += int(server.get("frames_lost") or 0)
    call_id = result.get("call_id", "?")
    if code != 0 or server.get("status") != "ended":
        stats.failed.append(f"{call_id}: exit {code}, status {server.get('status')}, {server.get('reason')}")
    elif not server.get("frames_received") == server.get("frames_sealed") == sent:
        stats.failed.append(f"{call_id}: sent {sent}, received {server.get('frames_received')}, sealed "
                            f"{server.get('frames_sealed')}")  # fmt: skip
    if not check:
        return
    code, shown, _ = await run_cli(["transcripts", "show", call_id, "--json"], env, 120)
    texts = [json.loads(line)["text"] for line in shown.splitlines() if line.startswith("{")]
    joined = " ".join(texts).lower()
    missing = [w for w in fx.words if w not in joined]
    stats.words_expected += len(fx.words)
    stats.words_missing += len(missing)
    if code != 0 or not fx.words or (len(fx.words) - len(missing)) / len(fx.words) < min_recall - 1e-9:
        stats.transcript_failures.append(f"{call_id} ({fx.path.name}): exit {code}, missing {missing}")
    stats.phi_hits += [f"{call_id}: {h}" for h in scan_text(joined, fx.needles)]


async def sampler(pid: int | None, stats: Stats, every: float, t0: float) -> None:
    while pid is not None:
        try:
            rss, fds = proc_usage(pid)
        except OSError:
            return
        stats.samples.append((round(time.monotonic() - t0, 1), rss, fds))
        await asyncio.sleep(every)


async def idle_usage(pid: int | None, settle: float) -> tuple[int, int]:
    """Usage once calls have wound down: the lowest fd count over `settle` seconds, RSS at that point."""
    if pid is None:
        return 0, 0
    best = proc_usage(pid)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        now = proc_usage(pid)
        if now[1] <= best[1]:
            best = now
    return best


async def soak(args: argparse.Namespace, url: str, pid: int | None, env: dict[str, str]) -> dict[str, Any]:
    fixtures = [Fixture.load((REPO / f) if not Path(f).is_absolute() else Path(f)) for f in args.fixture]
    check = bool(env.get("CONVERSE_DATA_DIR"))
    stats = Stats()
    t0 = time.monotonic()
    # One call of each fixture (model loaded, code paths hot), then the idle fd baseline.
    for fx in fixtures:
        started = time.monotonic()
        await one_call(url, fx, env, args.token, stats, check, args.min_word_recall)
        fx.seconds = time.monotonic() - started
    rss_first, fds_base = await idle_usage(pid, args.settle_s)
    t_run = time.monotonic()
    sampling = asyncio.create_task(sampler(pid, stats, args.sample_s, t0))
    # The run lasts --minutes in all, warm-up calls included, and no call starts that could not end by
    # then (each lane still makes one): the soak in CI takes its ten minutes, not twelve.
    deadline = t0 + args.minutes * 60
    warmup_end = t_run + min(args.warmup_minutes, args.minutes / 2) * 60
    counter = 0

    async def lane(lane_no: int) -> None:
        nonlocal counter
        await asyncio.sleep(lane_no * 1.5)  # stagger the lanes so offers and speech do not align
        made = 0
        while True:
            fx = fixtures[counter % len(fixtures)]
            if made and time.monotonic() + fx.seconds > deadline:
                break
            counter += 1
            made += 1
            await one_call(url, fx, env, args.token, stats, check, args.min_word_recall)

    if not stats.failed:  # a warm-up call that fails would fail the same way for ten minutes
        await asyncio.gather(*(lane(i) for i in range(args.concurrency)))
    t_end = time.monotonic()
    sampling.cancel()
    rss_idle, fds_end = await idle_usage(pid, args.settle_s)
    window = min(60.0, (warmup_end - t_run) / 2)

    def median_rss(until: float) -> int:
        vals = sorted(r for t, r, _ in stats.samples if until - window <= t + t0 <= until)
        return vals[len(vals) // 2] if vals else rss_idle

    rss_warm, rss_end = median_rss(warmup_end), median_rss(t_end)
    rss_max = max((s[1] for s in stats.samples), default=rss_idle)
    fds_max = max((s[2] for s in stats.samples), default=fds_end)
    growth_mb = (rss_end - rss_warm) / 2**20
    checks = {
        "calls_ok": not stats.failed and stats.calls > len(fixtures),
        "frames_lost": stats.frames_lost == 0,
        "transcripts": not stats.transcript_failures if check else None,
        "no_phi": not stats.phi_hits if check else None,
        "rss_growth": growth_mb < args.max_rss_growth_mb if pid else None,
        "fds": fds_end - fds_base <= args.fd_slack if pid else None,
    }
    return {
        "url": url,
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "fixtures": [f.path.name for f in fixtures],
        "calls": stats.calls,
        "wall_s": round(time.monotonic() - t0, 1),
        "failed_calls": stats.failed[:20],
        "frames_sent": stats.frames_sent,
        "frames_lost": stats.frames_lost,
        "transcript_failures": stats.transcript_failures[:20],
        "content_words": {"expected": stats.words_expected, "missing": stats.words_missing},
        "phi_hits": stats.phi_hits[:20],
        "rss_mb": {
            "idle_after_first_calls": round(rss_first / 2**20, 1),
            "after_warmup": round(rss_warm / 2**20, 1),
            "end_of_run": round(rss_end / 2**20, 1),
            "growth": round(growth_mb, 1),
            "end_idle": round(rss_idle / 2**20, 1),
            "max": round(rss_max / 2**20, 1),
            "warmup_s": round(warmup_end - t_run),
        },
        "fds": {"baseline_idle": fds_base, "end_idle": fds_end, "max": fds_max},
        # [seconds, RSS MB, fds], at most ~60 of them, as one compact line each in the output
        "samples": [
            f"{t:.0f}s {r / 2**20:.1f}MB {f}fd"
            for t, r, f in stats.samples[:: max(1, len(stats.samples) // 60)]
        ],
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--url", help="an already running worker (default: start one)")
    p.add_argument("--pid", type=int, help="its process id, for RSS and fd checks (with --url)")
    p.add_argument("--data-dir", help="its data directory, for transcript checks (with --url)")
    p.add_argument("--kek-file", help="its KEK file (with --url)")
    p.add_argument("--token", default=os.environ.get("CONVERSE_API_TOKEN") or secrets.token_urlsafe(24))
    p.add_argument("--fixture", action="append", help="fixture to send (repeatable; default: rotate two)")
    p.add_argument("--asr-threads", default=None, help="CONVERSE_ASR_THREADS of the started serve")
    p.add_argument(
        "--min-word-recall",
        type=float,
        default=0.8,
        help="share of a fixture's content words each call must have",
    )
    p.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    p.add_argument("--warmup-minutes", type=float, default=2.0, help="at most half the run")
    p.add_argument("--fd-slack", type=int, default=4)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--settle-s", type=float, default=8.0, help="idle time before baseline/end measurements")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = p.parse_args(argv)
    args.fixture = args.fixture or list(DEFAULT_FIXTURES)
    workdir = Path(tempfile.mkdtemp(prefix="converse-soak-"))
    serve_proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    if args.url:
        url, pid = args.url, args.pid
        env = base_env(Path(args.data_dir or ""), Path(args.kek_file or ""), args.token)
        if not args.data_dir:
            env.pop("CONVERSE_DATA_DIR")
    else:
        env = base_env(workdir / "data", workdir / "keys" / "kek.json", args.token)
        serve_proc, url, log = start_serve(workdir, env, args.asr_threads)
        pid = serve_proc.pid
    try:
        report = asyncio.run(soak(args, url, pid, env))
    finally:
        if serve_proc is not None:
            serve_proc.send_signal(signal.SIGTERM)
            try:
                serve_proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                serve_proc.kill()
    if env.get("CONVERSE_DATA_DIR"):
        needles = PhiNeedles.of(p for f in args.fixture for p in Fixture.load(REPO / f).needles.values)
        roots = [Path(env["CONVERSE_DATA_DIR"])] + ([log] if log else [])
        file_hits = sweep(roots, needles)
        report["phi_file_hits"] = file_hits[:20]
        report["checks"]["no_phi"] = bool(report["checks"]["no_phi"]) and not file_hits
    if serve_proc is not None:
        report["serve_exit"] = serve_proc.returncode
        report["checks"]["clean_shutdown"] = serve_proc.returncode == 0
    if not args.keep and not args.url:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    else:
        report["workdir"] = str(workdir)
    report["ok"] = all(v is not False for v in report["checks"].values())
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

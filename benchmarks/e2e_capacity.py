"""End-to-end capacity: N real WebRTC calls (aiortc clients in separate processes) into ONE `serve` process.

Usage: .venv/bin/python benchmarks/e2e_capacity.py [--quick] [--pin-clients CPUS] [--profile]

The script starts `python -m worker serve` on 127.0.0.1 (CONVERSE_LOOPBACK_ONLY=true, port 0, a temp data
dir and KEK, default ASR settings) and, after one warm-up call, sweeps N over SWEEP. For each N, N calls
are made by ceil(N / CALLS_PER_CLIENT) client processes (this script with `--client`), each running its
calls concurrently through `worker.cli.call_client.run_call` (aiortc, Opus, WHIP, loopback ICE): call i
replays bench fixture i mod 10 (fixtures/bench, ground truth in its manifest) cut to ~SECONDS of audio,
in real time, starting i * STAGGER_S / N s after the first. Each client Opus-encodes its calls before the
step starts and aiortc sends those packets as they are (`--encode-live`: aiortc encodes every frame during
the call, as a browser does, on the same 2 cores as the worker). A step stops the sweep when its p95 passes
STOP_P95_S (or calls fail).

Per N:
- time to final p50/p95/p99, exact per utterance (issue 5's definition): the commit of the redacted
  transcript minus the end of speech. The end of speech is the wall time at which the client's track
  handed aiortc the frame holding the ground-truth end (every frame is stamped as it leaves
  `FixtureTrack.recv`); the commit is the utterance's stored `committed_at` (UTC, ms; stamped just before
  the store write), read from the data dir after the step. Same host, same clock. The server's own
  `converse_time_to_final_seconds` histogram (from the VAD's end of voice) is scraped before and after
  the step and its p50/p95/p99 interpolated as Prometheus' histogram_quantile does, for comparison.
- server CPU: user+sys of the serve process (all threads, /proc/PID/stat) over the step, as cores and as
  % of a core per call (CPU seconds / summed call seconds); the event-loop thread's share
  (/proc/PID/task/PID/stat) separately.
- server memory: peak VmRSS during the step minus the idle VmRSS after the warm-up call, per call.
- frames lost (the worker's DELETE summary), frames sent vs received, calls failed, utterances
  without a final, finals over silence.
- event-loop lag: the worker exposes no loop-lag metric, so the proxy is the round trip of GET /healthz
  every PROBE_S (a loop busy for X ms answers X ms late).
- the clients' own CPU (each client process reads /proc/self/stat around its calls) and how late the
  clients handed frames to aiortc (their pacing lag): clients that starve would show here.
- the machine: busy cores from /proc/stat minus server and clients = other load on the host.

Then one media-only step (MEDIA_N calls of -60 dBFS white noise: below the VAD's -50 dBFS energy gate, so
no utterance reaches ASR) measures the media path alone: aiortc receive, Opus decode, resampling, VAD,
sealing, storage, HTTP. Capacity = the largest N whose p95 is under BUDGET_P95_S with no frame lost and
no failed call, every smaller N holding too. `--profile`: py-spy (if installed) records the worker during
the step N = PROFILE_N (speedscope JSON + collapsed stacks under benchmarks/results/). Last, the
media-only step again on a second worker started with CONVERSE_SPEECH_BATCH_SECONDS=BASELINE_BATCH_S
(a decode/VAD tick, and so a hop to the thread, every 20 ms frame, as before batching): the JSON's
`media_gain_batching` is the before/after ratio of media CPU per call from this one run.

Prints human lines; the LAST line is one JSON object. Writes benchmarks/results/e2e_capacity.json and
e2e_capacity.png (p95 vs N; CPU per call vs N; memory per call); `--quick` (N = 1, 2 on ~12 s calls,
media-only at N = 2, ~2 minutes) writes e2e_capacity_quick.*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RESULTS,
    ROOT,
    cpu_seconds,
    load_bench,
    loadavg,
    machine,
    percentiles,
    pyplot,
    write_json,
)

SWEEP = (1, 2, 4, 8, 12, 16, 20, 24)
SECONDS = 30.0  # audio per call: ~6 utterances
STAGGER_S = 3.0  # call starts spread over this long
CALLS_PER_CLIENT = 4  # calls per client process
BUDGET_P95_S = 1.5  # issue 10
STOP_P95_S = 3.0
TARGET_CALLS = 16
MEDIA_N = 8  # media-only step
BASELINE_BATCH_S = 0.02  # the media-only step again with a tick per 20 ms frame (before/after in one run)
PROFILE_N, PROFILE_S = 8, 20
WARMUP_SECONDS = 6.0
PROBE_S = 0.1  # /healthz probe period
RSS_S = 0.25  # VmRSS sampling period
QUICK_SWEEP, QUICK_SECONDS, QUICK_MEDIA_N = (1, 2), 12.0, 2
TOKEN = "e2e-capacity-bench-token-0123456789"  # noqa: S105 - a throwaway token for a loopback worker
NOISE_DBFS = -60.0
TAIL_S = 1.5  # silence sent after each call's audio (run_call's default)
ENCODE_LIVE = False  # --encode-live: clients encode while sending, as before pre-encoding
TARGET_MEDIA_PCT, TARGET_MB = 3.0, 15.0  # issue 10: media path % of a core per call; MB per call
CLK = os.sysconf("SC_CLK_TCK")
_VENV_SPY = Path(sys.executable).parent / "py-spy"
SPY = shutil.which("py-spy") or (str(_VENV_SPY) if _VENV_SPY.exists() else None)


# -- client process -------------------------------------------------------------------------------------

_TRACKS: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("tracks")


def client_main() -> None:
    """`--client`: a spec on stdin, "ready" on stdout, wait for "go WALL", make the calls, one JSON line."""
    spec = json.loads(sys.stdin.readline())
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    import numpy as np

    import worker.cli.call_client as cc
    from media.frames import FRAME_SECONDS
    from worker.webrtc.peer import loopback_only

    bench = load_bench(count=min(10, max(c["index"] for c in spec["calls"]) + 1), seconds=spec["seconds"])

    class StampedTrack(cc.FixtureTrack):
        """The client's track, stamping the wall time each frame is handed to aiortc."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stamps: list[float] = []
            _TRACKS.get().append(self)

        async def recv(self) -> Any:
            frame = await super().recv()
            self.stamps.append(time.time())
            return frame

    cc.FixtureTrack = StampedTrack  # type: ignore[misc]  # run_call builds its tracks from this name

    def audio(c: dict[str, Any]) -> Any:
        pcm = bench[c["index"] % len(bench)].fixture.tracks[0].pcm
        if spec["media_only"]:
            rms = 32768 * 10 ** (NOISE_DBFS / 20)
            pcm = np.random.default_rng(c["index"]).normal(0, rms, len(pcm)).round().astype(np.int16)
        return pcm

    # Opus-encoded before "ready" (unless --encode-live): during the step a client only sends packets, so
    # its CPU is the WebRTC send path, not an encoder per call competing with the worker for the 2 cores.
    pcms = {c["index"]: audio(c) for c in spec["calls"]}
    encoded = {
        i: None if spec["encode_live"] else [cc.encode_track(pcm, cc.track_frames(len(pcm), TAIL_S))]
        for i, pcm in pcms.items()
    }

    async def one(c: dict[str, Any], start: float) -> dict[str, Any]:
        call = bench[c["index"] % len(bench)]
        pcm = pcms[c["index"]]
        tracks: list[Any] = []
        _TRACKS.set(tracks)
        await asyncio.sleep(max(0.0, start + c["offset"] - time.time()))
        out: dict[str, Any] = {"index": c["index"], "fixture": call.fixture.name}
        try:
            # loopback_only is entered once for the whole process below: run_call's own (per call) save and
            # restore of aioice's address lookup is not safe for overlapping calls in one process.
            r = await cc.run_call(
                spec["url"],
                [pcm],
                spec["token"],
                True,
                tail_s=TAIL_S,
                loopback_only=False,
                packets=encoded[c["index"]],
            )
            out.update(
                call_id=r["call_id"],
                frames_sent=sum(r["frames_sent"]),
                server=r["server"],
                duration_s=r["duration_s"],
            )
        except Exception as exc:  # one failed call is a figure, not the end of the benchmark
            out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        stamps = tracks[0].stamps if tracks else []
        if stamps:
            late = sorted(s - (stamps[0] + i * FRAME_SECONDS) for i, s in enumerate(stamps))
            out["late_ms_p99"] = round(late[int(0.99 * (len(late) - 1))] * 1000, 2)
            out["late_ms_max"] = round(late[-1] * 1000, 2)
            if not spec["media_only"]:
                out["truth"] = [
                    [u.start, u.end, stamps[min(math.floor(u.end / FRAME_SECONDS), len(stamps) - 1)]]
                    for u in call.truth
                ]
        return out

    async def run_all(start: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(c, start) for c in spec["calls"])))

    print("ready", flush=True)
    start = float(sys.stdin.readline().split()[1])
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    with loopback_only():
        calls = asyncio.run(run_all(start))
    print(
        json.dumps(
            {
                "calls": calls,
                "cpu_s": round(cpu_seconds() - cpu0, 3),
                "wall_s": round(time.monotonic() - wall0, 3),
            }
        )
    )


# -- the server ---------------------------------------------------------------------------------------------


def proc_cpu(pid: int, tid: int | None = None) -> float:
    """utime + stime seconds of a process (all threads) or one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK


def start_server(
    tmp: Path, max_calls: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSE_")}
    env.update(
        CONVERSE_DATA_DIR=str(tmp / "data"),
        CONVERSE_KEK_FILE=str(tmp / "keys" / "kek.json"),
        CONVERSE_API_TOKEN=TOKEN,
        CONVERSE_HTTP_PORT="0",
        CONVERSE_LOOPBACK_ONLY="true",
        CONVERSE_LOG_FORMAT="json",
        CONVERSE_MAX_CALLS=str(max_calls),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    log = tmp / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "serve"],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            if "serving on http://" in line:
                return proc, line.split("serving on ", 1)[1].split()[0], log
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not start: " + log.read_text()[-2000:])


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape_histogram(url: str) -> dict[float, float]:
    """Cumulative bucket counts of converse_time_to_final_seconds, by upper bound."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:  # noqa: S310 - our http:// URL
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("converse_time_to_final_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile on the step's bucket deltas (linear inside a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b, c in zip(bounds, counts, strict=True):
        if c >= rank:
            if math.isinf(b):
                return prev_b
            return round(prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9), 3)
        prev_b, prev_c = b, c
    return None


class Sampler(threading.Thread):
    """During a step: /healthz round trips (event-loop lag proxy) and the worker's VmRSS."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = url.split("//", 1)[1].split(":")
        self.pid = pid
        self.rtts: list[float] = []
        self.rss_kb: list[int] = []
        self.stop = threading.Event()
        self.cpu_first: dict[int, float] = {}  # per thread (tid): CPU seconds when first seen, last seen
        self.cpu_last: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.dump_at: float | None = None  # monotonic time for one `py-spy dump` (thread names)

    def thread_cpu(self) -> None:
        """Read every thread's CPU; a thread first seen after the first read started during the step."""
        first = not self.cpu_last
        with contextlib.suppress(OSError):
            for tid in map(int, os.listdir(f"/proc/{self.pid}/task")):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    cpu = proc_cpu(self.pid, tid)
                    self.cpu_first.setdefault(tid, cpu if first else 0.0)
                    self.cpu_last[tid] = cpu

    def dump_names(self) -> None:
        if SPY is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [SPY, "dump", "--nonblocking", "-p", str(self.pid)],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            for line in out.splitlines():
                if line.startswith("Thread ") and '"' in line:
                    self.names[int(line.split()[1], 0)] = line.split('"')[1]

    def by_role(self) -> dict[str, float]:
        """CPU seconds per thread role over the step (threads that py-spy could not name have no Python
        frames: native ones, e.g. CTranslate2's compute threads)."""
        out: dict[str, float] = {}
        for tid, last in self.cpu_last.items():
            name = self.names.get(
                tid, "native threads (CTranslate2 compute, ...)" if self.names else "unnamed"
            )
            if tid == self.pid:
                role = "event loop (MainThread)"
            elif "decoder" in name:
                role = "aiortc decoder threads"
            elif name.startswith("asyncio_"):
                role = "default executor (to_thread: decode/resample/VAD, ...)"
            else:
                role = name.rstrip("0123456789").rstrip("_-")
            out[role] = out.get(role, 0.0) + last - self.cpu_first.get(tid, last)
        return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def run(self) -> None:
        conn = HTTPConnection(self.host, int(self.port), timeout=10)
        next_rss = next_cpu = 0.0
        while not self.stop.is_set():
            t = time.monotonic()
            if t >= next_rss:
                with contextlib.suppress(OSError):
                    self.rss_kb.append(proc_status_kb(self.pid, "VmRSS"))
                next_rss = t + RSS_S
            if t >= next_cpu:  # threads come and go with calls: each is read while it lives
                self.thread_cpu()
                next_cpu = t + 1.0
            if self.dump_at is not None and t >= self.dump_at:
                self.dump_at = None
                self.dump_names()
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                self.rtts.append(time.monotonic() - t)
            except OSError:
                conn.close()
                conn = HTTPConnection(self.host, int(self.port), timeout=10)
            self.stop.wait(max(0.0, t + PROBE_S - time.monotonic()))
        conn.close()


async def read_finals(tmp: Path, call_ids: list[str]) -> dict[str, list[tuple[float, float, float]]]:
    """(start, end, committed_at as epoch seconds) of every stored utterance on track 0 of each call."""
    from storage.factory import open_stores
    from storage.keys import LocalKeyFile

    stores = await open_stores(tmp / "data", keys=LocalKeyFile(tmp / "keys" / "kek.json"))
    try:
        out = {}
        for cid in call_ids:
            utts = await stores.transcripts.get_utterances(cid)
            out[cid] = [
                (u.start, u.end, datetime.fromisoformat(u.committed_at.replace("Z", "+00:00")).timestamp())
                for u in utts
                if u.track == 0
            ]
        return out
    finally:
        await stores.close()


# -- one step -----------------------------------------------------------------------------------------------


def run_clients(
    url: str, n: int, seconds: float, media_only: bool, cpus: list[int] | None
) -> tuple[list[subprocess.Popen[str]], list[dict[str, Any]]]:
    procs, specs = [], []
    for k in range(math.ceil(n / CALLS_PER_CLIENT)):
        calls = [
            {"index": i, "offset": round(i * STAGGER_S / n, 3)}
            for i in range(n)
            if i % math.ceil(n / CALLS_PER_CLIENT) == k
        ]
        spec = {
            "url": url,
            "token": TOKEN,
            "seconds": seconds,
            "media_only": media_only,
            "calls": calls,
            "cpus": cpus,
            "encode_live": ENCODE_LIVE,
        }
        p = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--client"],
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert p.stdin is not None
        p.stdin.write(json.dumps(spec) + "\n")
        p.stdin.flush()
        procs.append(p)
        specs.append(spec)
    for p in procs:  # imports and fixture decoding stay out of the measured window
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"client did not start: {line}{p.communicate()[1][-2000:]}")
    return procs, specs


def step(
    url: str,
    pid: int,
    tmp: Path,
    n: int,
    seconds: float,
    *,
    media_only: bool = False,
    cpus: list[int] | None = None,
    rss_idle_kb: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    procs, _ = run_clients(url, n, seconds, media_only, cpus)
    hist0 = scrape_histogram(url)
    sampler = Sampler(url, pid)
    spy = None
    if profile is not None and SPY:
        # --gil: only the thread holding the GIL is sampled, so the shares are Python CPU (threads waiting
        # on the GIL or a lock would otherwise show as busy); thread_cpu gives the split across threads.
        spy = subprocess.Popen(
            [
                SPY,
                "record",
                "-p",
                str(pid),
                "-d",
                str(PROFILE_S),
                "-r",
                "50",
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "-o",
                str(profile.with_suffix(".txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    cpu0, loop0, busy0, wall0 = proc_cpu(pid), proc_cpu(pid, pid), machine_busy_s(), time.monotonic()
    sampler.dump_at = time.monotonic() + STAGGER_S + min(seconds / 2, 10.0)  # every call is up by then
    sampler.thread_cpu()
    sampler.start()
    start = time.time() + 0.2
    outs = []
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"go {start}\n")
        p.stdin.flush()  # communicate() closes it
    for p in procs:
        out, err = p.communicate(timeout=seconds + STAGGER_S + 180)
        if p.returncode != 0 or not out.strip():
            raise SystemExit(f"client failed ({p.returncode}): {err[-3000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.monotonic() - wall0
    cpu, loop, busy = proc_cpu(pid) - cpu0, proc_cpu(pid, pid) - loop0, machine_busy_s() - busy0
    sampler.stop.set()
    sampler.join()
    sampler.thread_cpu()
    if spy is not None:
        spy.wait(timeout=PROFILE_S + 60)
    hist1 = scrape_histogram(url)
    calls = [c for o in outs for c in o["calls"]]
    ok = [c for c in calls if "error" not in c]
    finals = asyncio.run(read_finals(tmp, [c["call_id"] for c in ok])) if ok else {}
    ttf, missed, spurious = [], 0, 0
    for c in ok:
        fs = finals.get(c["call_id"], [])
        for _start, end_s, end_push in c.get("truth", []):
            hit = next((f for f in fs if f[0] - 0.05 <= end_s <= f[1] + 0.05), None)
            if hit is None:
                missed += 1
            else:
                ttf.append(round(hit[2] - end_push, 4))
        truth = c.get("truth", [])
        spurious += sum(1 for f in fs if not any(t[0] < f[1] and t[1] > f[0] for t in truth))
    call_s = sum(c["duration_s"] for c in ok) or wall
    clients_cpu = sum(o["cpu_s"] for o in outs)
    rss_peak = max(sampler.rss_kb or [0])
    rtt = percentiles(sampler.rtts)
    r: dict[str, Any] = {
        "n": n,
        "media_only": media_only,
        "client_processes": len(procs),
        "calls_ok": len(ok),
        "calls_failed": len(calls) - len(ok),
        "errors": sorted({c["error"] for c in calls if "error" in c})[:5],
        "utterances": len(ttf) + missed,
        "missed": missed,
        "finals_over_silence": spurious,
        "ttf": percentiles(ttf),
        "ttf_server_histogram": {
            f"p{round(q * 100)}": histogram_quantile(q, hist0, hist1) for q in (0.5, 0.95, 0.99)
        },
        "frames_sent": sum(c.get("frames_sent", 0) for c in ok),
        "frames_received": sum((c["server"] or {}).get("frames_received", 0) for c in ok),
        "frames_lost": sum((c["server"] or {}).get("frames_lost", 0) for c in ok),
        "wall_s": round(wall, 2),
        "call_seconds": round(call_s, 1),
        "server_cpu_cores": round(cpu / wall, 3),
        "server_cpu_pct_per_call": round(cpu / call_s * 100, 2),
        "server_loop_thread_pct_per_call": round(loop / call_s * 100, 2),
        "server_cpu_pct_per_call_by_thread": {
            k: round(v / call_s * 100, 2) for k, v in sampler.by_role().items()
        },
        "rss_idle_mb": round(rss_idle_kb / 1024, 1),
        "rss_peak_mb": round(rss_peak / 1024, 1),
        "rss_per_call_mb": round((rss_peak - rss_idle_kb) / 1024 / n, 2),
        "healthz_rtt_ms": {k: (round(v * 1000, 1) if isinstance(v, float) else v) for k, v in rtt.items()},
        "clients_cpu_cores": round(clients_cpu / wall, 3),
        "client_cpu_pct_per_call": round(clients_cpu / call_s * 100, 2),
        "client_late_ms_max": max((c.get("late_ms_max", 0.0) for c in calls), default=0.0),
        "machine_busy_cores": round(busy / wall, 3),
        "other_load_cores": round(max(0.0, busy - cpu - clients_cpu) / wall, 3),
        "loadavg": loadavg(),
        "ttf_samples": sorted(ttf),
    }
    return r


def describe(r: dict[str, Any]) -> str:
    t, h = r["ttf"], r["ttf_server_histogram"]
    head = f"N={r['n']:2d}{' media-only' if r['media_only'] else ''}: "
    ttf = (
        ""
        if r["media_only"]
        else f"time to final p50 {t['p50']} s p95 {t['p95']} s p99 {t['p99']} s over {t['n']} utterances "
        f"(server histogram p95 ~{h['p95']} s), missed {r['missed']}; "
    )
    return (
        head + ttf + f"frames lost {r['frames_lost']}, calls failed {r['calls_failed']}; server "
        f"{r['server_cpu_cores']:.2f} cores = {r['server_cpu_pct_per_call']:.1f}% of a core per call (loop "
        f"thread {r['server_loop_thread_pct_per_call']:.1f}%), RSS +{r['rss_per_call_mb']:.1f} MB per call; "
        f"/healthz p99 {r['healthz_rtt_ms']['p99']} ms; clients {r['client_cpu_pct_per_call']:.1f}% per call "
        f"(late max {r['client_late_ms_max']:.0f} ms); other load {r['other_load_cores']:.2f} cores"
    )


def passes(r: dict[str, Any]) -> bool:
    p95 = r["ttf"]["p95"]
    return (
        p95 is not None
        and p95 < BUDGET_P95_S
        and r["frames_lost"] == 0
        and r["calls_failed"] == 0
        and r["missed"] == 0
    )


# -- profile summary ----------------------------------------------------------------------------------------


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        leaf = frames[-1]
        self_c[leaf] = self_c.get(leaf, 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c

    def share(d: dict[str, int]) -> list[list[Any]]:
        return [[k, round(v / total * 100, 1)] for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "self_pct": share(self_c), "inclusive_pct": share(incl)}


# -- main ---------------------------------------------------------------------------------------------------


def plot(steps: list[dict[str, Any]], media: dict[str, Any] | None, cap: int | None, path: Path) -> str:
    plt = pyplot()
    if plt is None:
        return "matplotlib not installed: PNG skipped"
    ns = [s["n"] for s in steps]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.6))
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^:")):
        a1.plot(ns, [s["ttf"][key] for s in steps], style, label=f"time to final {key} (exact)")
    a1.plot(
        ns,
        [s["ttf_server_histogram"]["p95"] for s in steps],
        "x--",
        color="grey",
        label="p95 from the server's histogram",
    )
    a1.axhline(BUDGET_P95_S, color="r", ls="--", lw=1, label=f"budget p95 {BUDGET_P95_S} s")
    if cap:
        a1.axvline(cap, color="g", ls=":", lw=1, label=f"capacity N = {cap}")
    lost = [s["n"] for s in steps if s["frames_lost"]]
    if lost:
        a1.plot(lost, [BUDGET_P95_S] * len(lost), "rx", ms=10, label="frames lost")
    a1.set_xlabel("concurrent WebRTC calls (N)")
    a1.set_ylabel("seconds")
    a1.set_title("Time to final vs N (one serve process)")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    a2.plot(ns, [s["server_cpu_pct_per_call"] for s in steps], "o-", label="server, all threads")
    a2.plot(ns, [s["server_loop_thread_pct_per_call"] for s in steps], "s-", label="server event-loop thread")
    a2.plot(ns, [s["client_cpu_pct_per_call"] for s in steps], "^:", label="clients (aiortc senders)")
    if media:
        a2.axhline(
            media["server_cpu_pct_per_call"],
            color="purple",
            ls="--",
            lw=1,
            label=f"server media path only (N={media['n']}, no ASR)",
        )
    a2.axhline(TARGET_MEDIA_PCT, color="r", ls=":", lw=1, label=f"media target {TARGET_MEDIA_PCT:g}%")
    a2.set_xlabel("concurrent WebRTC calls (N)")
    a2.set_ylabel("% of one core per call")
    a2.set_title("CPU per call vs N")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    a3.plot(ns, [s["rss_per_call_mb"] for s in steps], "o-", label="RSS per call beyond idle")
    a3.axhline(TARGET_MB, color="r", ls=":", lw=1, label=f"target {TARGET_MB:g} MB")
    a3b = a3.twinx()
    a3b.plot(ns, [s["healthz_rtt_ms"]["p99"] for s in steps], "s:", color="tab:orange", label="/healthz p99")
    a3b.set_ylabel("/healthz round trip p99 (ms): loop lag proxy", color="tab:orange")
    a3.set_xlabel("concurrent WebRTC calls (N)")
    a3.set_ylabel("MB per call")
    a3.set_title("Memory per call and loop lag vs N")
    a3.legend(fontsize=7, loc="upper left")
    a3.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"wrote {path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 2 on ~12 s calls: checks the script")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--pin-clients", metavar="CPUS", help="pin client processes to these CPUs, e.g. 1")
    parser.add_argument("--profile", action="store_true", help=f"py-spy the worker at N = {PROFILE_N}")
    parser.add_argument("--sweep", help="comma-separated N to run instead of SWEEP (ad hoc; own file name)")
    parser.add_argument(
        "--encode-live",
        action="store_true",
        help="clients Opus-encode while they send (aiortc per frame) instead of before the step",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global ENCODE_LIVE
    ENCODE_LIVE = args.encode_live
    if args.client:
        client_main()
        return
    sweep: tuple[int, ...]
    sweep, seconds, media_n = (
        (QUICK_SWEEP, QUICK_SECONDS, QUICK_MEDIA_N) if args.quick else (SWEEP, SECONDS, MEDIA_N)
    )
    cpus = [int(c) for c in args.pin_clients.split(",")] if args.pin_clients else None
    name = "e2e_capacity_quick" if args.quick else "e2e_capacity"
    if args.sweep:
        sweep = tuple(int(x) for x in args.sweep.split(","))
        name = "e2e_capacity_n" + "-".join(map(str, sweep))
    info = machine()
    t0 = time.monotonic()
    steps: list[dict[str, Any]] = []
    media = None
    profile = None
    with tempfile.TemporaryDirectory(prefix="e2e-capacity-") as tmpname:
        tmp = Path(tmpname)
        proc, url, _log = start_server(tmp, max(sweep) + 4)
        try:
            print(f"serve pid {proc.pid} on {url}; warm-up call ...", flush=True)
            step(url, proc.pid, tmp, 1, WARMUP_SECONDS, rss_idle_kb=0)
            time.sleep(1.0)
            idle_kb = proc_status_kb(proc.pid, "VmRSS")
            c0, w0 = proc_cpu(proc.pid), time.monotonic()
            time.sleep(2.0)
            idle_cores = (proc_cpu(proc.pid) - c0) / (time.monotonic() - w0)
            print(
                f"idle worker: RSS {idle_kb / 1024:.0f} MB (model loaded), {idle_cores:.3f} cores", flush=True
            )
            for n in sweep:
                prof = args.out / f"{name}_profile_n{n}" if args.profile and n == PROFILE_N else None
                r = step(url, proc.pid, tmp, n, seconds, cpus=cpus, rss_idle_kb=idle_kb, profile=prof)
                if prof is not None and prof.with_suffix(".txt").exists():
                    profile = {
                        "n": n,
                        "raw": str(prof.with_suffix(".txt").relative_to(ROOT)),
                        **summarize_profile(prof.with_suffix(".txt")),
                    }
                steps.append(r)
                print(describe(r), flush=True)
                print(
                    "  server CPU by thread, % of a core per call: "
                    + ", ".join(f"{k} {v}" for k, v in r["server_cpu_pct_per_call_by_thread"].items()),
                    flush=True,
                )
                if r["calls_ok"] == 0 or (r["ttf"]["p95"] or math.inf) > STOP_P95_S:
                    print(f"p95 past {STOP_P95_S} s (or calls failed): sweep stops", flush=True)
                    break
            prof = args.out / f"{name}_profile_media_n{media_n}" if args.profile else None
            media = step(
                url,
                proc.pid,
                tmp,
                media_n,
                seconds,
                media_only=True,
                cpus=cpus,
                rss_idle_kb=idle_kb,
                profile=prof,
            )
            if prof is not None and prof.with_suffix(".txt").exists():
                media["profile"] = {
                    "raw": str(prof.with_suffix(".txt").relative_to(ROOT)),
                    **summarize_profile(prof.with_suffix(".txt")),
                }
            print(describe(media), flush=True)
            print(
                "  server CPU by thread, % of a core per call: "
                + ", ".join(f"{k} {v}" for k, v in media["server_cpu_pct_per_call_by_thread"].items()),
                flush=True,
            )
        finally:
            stop_server(proc)
        baseline = None
        if not args.quick:  # the same media-only step on a worker that hops to the thread per 20 ms frame
            base_dir = tmp / "baseline"
            proc, url, _log = start_server(
                base_dir, media_n + 4, {"CONVERSE_SPEECH_BATCH_SECONDS": str(BASELINE_BATCH_S)}
            )
            try:
                step(url, proc.pid, base_dir, 1, WARMUP_SECONDS, rss_idle_kb=0)
                time.sleep(1.0)
                base_idle_kb = proc_status_kb(proc.pid, "VmRSS")
                baseline = step(
                    url,
                    proc.pid,
                    base_dir,
                    media_n,
                    seconds,
                    media_only=True,
                    cpus=cpus,
                    rss_idle_kb=base_idle_kb,
                )
                baseline["speech_batch_seconds"] = BASELINE_BATCH_S
                print(describe(baseline) + f" [baseline: speech batch {BASELINE_BATCH_S} s]", flush=True)
            finally:
                stop_server(proc)
    cap = None
    for r in steps:
        if not passes(r):
            break
        cap = r["n"]
    verdict = "met" if cap is not None and cap >= TARGET_CALLS else "NOT met"
    print(
        f"capacity: {cap} concurrent WebRTC calls within p95 {BUDGET_P95_S} s and no frame lost "
        f"(target >= {TARGET_CALLS}: {verdict}); media path alone {media['server_cpu_pct_per_call']:.2f}% "
        f"of a core per call (target < {TARGET_MEDIA_PCT:g}%)"
    )
    info["loadavg_at_end"] = loadavg()
    summary = {
        "benchmark": "e2e_capacity",
        "quick": args.quick,
        "command": " ".join(["benchmarks/e2e_capacity.py", *sys.argv[1:]]),
        "constants": {
            "sweep": list(sweep),
            "seconds": seconds,
            "stagger_s": STAGGER_S,
            "calls_per_client": CALLS_PER_CLIENT,
            "budget_p95_s": BUDGET_P95_S,
            "stop_p95_s": STOP_P95_S,
            "pin_clients": cpus,
            "clients_encode_live": ENCODE_LIVE,
            "noise_dbfs": NOISE_DBFS,
        },
        "machine": info,
        "worker_idle": {"rss_mb": round(idle_kb / 1024, 1), "cpu_cores": round(idle_cores, 3)},
        "wall_s": round(time.monotonic() - t0, 1),
        "capacity": cap,
        "targets": {
            "calls": TARGET_CALLS,
            "met": cap is not None and cap >= TARGET_CALLS,
            "media_pct_core_per_call": TARGET_MEDIA_PCT,
            "mb_per_call": TARGET_MB,
        },
        "steps": steps,
        "media_only": media,
        "media_only_baseline": baseline,
        # The hot spot fixed after the first quiet run: per-frame hops to the decode/VAD thread.
        "media_gain_batching": (
            round(baseline["server_cpu_pct_per_call"] / media["server_cpu_pct_per_call"], 2)
            if baseline and media and media["server_cpu_pct_per_call"]
            else None
        ),
        "profile": profile,
    }
    write_json(args.out, name, summary)
    print(plot(steps, media, cap, args.out / f"{name}.png"))
    compact = {
        **summary,
        "steps": [{k: v for k, v in s.items() if k != "ttf_samples"} for s in steps],
        "media_only": {k: v for k, v in (media or {}).items() if k != "ttf_samples"},
        "media_only_baseline": {k: v for k, v in (baseline or {}).items() if k != "ttf_samples"},
    }
    print(json.dumps(compact))


if __name__ == "__main__":
    main()

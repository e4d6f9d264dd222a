"""Media streams under load: N concurrent telephony streams (8 kHz mu-law, 20 ms messages, real time) into
ONE `serve` process; time to final per spoken utterance.

Usage: .venv/bin/python benchmarks/media_streams_load.py [--streams N] [--seconds S]

Starts `python -m worker serve` on 127.0.0.1 (temp data dir and KEK, default ASR settings), sends one
warm-up stream, then N streams at once from this process (`worker.cli.media_streams_client.stream_call`,
aiohttp WebSockets): stream i carries bench fixture i mod 10 (fixtures/bench, ground truth in its
manifest) cut to about S seconds, starting i * STAGGER_S / N s after the first.

Time to final (issue 5's definition): the stored `committed_at` of the utterance whose span holds a spoken
utterance's ground-truth end, minus the wall time at which the client sent the chunk holding that end
(chunk k leaves at the stream's `started_at` + k * 20 ms; same host, same clock). The server's own
`converse_time_to_final_seconds` histogram (from the VAD's end of voice) is scraped before and after, and
its p95 interpolated as Prometheus' histogram_quantile does, for comparison. Results go to
benchmarks/results/media_streams_load.json with the load average, since the host is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, load_bench, loadavg, machine, percentiles, write_json

from tests.serve_util import TOKEN, serve
from worker.cli.media_streams_client import stream_call

STREAMS = 16
SECONDS = 30.0
STAGGER_S = 2.0
CHUNK_S = 0.02


def _histogram(url: str) -> dict[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()  # noqa: S310 - loopback http
    pattern = r'^converse_time_to_final_seconds_bucket\{le="([^"]+)"\} (\S+)$'
    return {float(m.group(1)): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


def _quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    les = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in les]
    if not counts or counts[-1] == 0:
        return None
    rank, prev_le, prev_c = q * counts[-1], 0.0, 0.0
    for le, c in zip(les, counts, strict=True):
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return round(prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9), 4)
        prev_le, prev_c = le, c
    return None


def _stored(env: dict[str, str], call_id: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "worker", "transcripts", "show", call_id, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _streams(ws_url: str, n: int, seconds: float) -> tuple[list[Any], list[dict[str, Any]]]:
    bench = load_bench(seconds=seconds)
    warm = bench[0].fixture.tracks[0].pcm[: 5 * 48_000]
    await stream_call(ws_url, [warm], TOKEN, tail_s=1.0)

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(i * STAGGER_S / n)
        return await stream_call(ws_url, [bench[i % len(bench)].fixture.tracks[0].pcm], TOKEN)

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return bench, [r if isinstance(r, dict) else {"error": type(r).__name__} for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=STREAMS)
    ap.add_argument("--seconds", type=float, default=SECONDS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp)) as srv:
        ws_url = srv.url.replace("http://", "ws://") + "/media-streams"
        load_before = loadavg()
        before = _histogram(srv.url)
        t0 = time.monotonic()
        bench, results = asyncio.run(_streams(ws_url, args.streams, args.seconds))
        wall = time.monotonic() - t0
        after = _histogram(srv.url)
        ttf, missed = [], 0
        for i, r in enumerate(results):
            if "call_id" not in r:
                continue
            finals = _stored(srv.env, r["call_id"])
            for u in bench[i % len(bench)].truth:
                hit = next((f for f in finals if f["start"] - 0.05 <= u.end <= f["end"] + 0.05), None)
                if hit is None:
                    missed += 1
                    continue
                sent = r["started_at"] + math.floor(u.end / CHUNK_S) * CHUNK_S
                ttf.append(_epoch(hit["committed_at"]) - sent)
        report = {
            "streams": args.streams,
            "seconds_each": args.seconds,
            "ended_ok": sum(1 for r in results if r.get("close_code") == 1000),
            "close_reasons": sorted(
                {str(r.get("close_reason", r.get("error", ""))).partition(": ")[2] for r in results}
            ),
            "time_to_final_s": percentiles(ttf),
            "utterances_without_final": missed,
            "server_histogram_p95_s": _quantile(0.95, before, after),
            "wall_s": round(wall, 1),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "machine": machine(),
        }
    print(json.dumps(report))
    write_json(RESULTS, "media_streams_load", report)


if __name__ == "__main__":
    main()

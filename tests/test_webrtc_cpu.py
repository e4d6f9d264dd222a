"""CPU per call of the WebRTC edge (server side only: the clients run in another process).

Run: `.venv/bin/pytest tests/test_webrtc_cpu.py -m slow -s` prints one JSON line per mode. It compares
aiortc's own Opus decode (`decode_in_aiortc=True`) with the tap's no-op decoder (the default), with the
fake engine standing in for the pipeline, so the figure is aiortc's receive path plus this edge.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.fakes_engine import FakeEngine
from worker.webrtc.peer import Calls, WebRtcConfig
from worker.webrtc.whip import static_bearer, whip_routes

pytestmark = pytest.mark.slow
TOKEN = "cpu-token"
CALLS = 4
SECONDS = 10.0
STEADY_S = 6.0

ROOT = Path(__file__).resolve().parents[1]
CLIENT = """
import asyncio, json, sys
import numpy as np
from worker.cli.call_client import run_call
url, token, calls, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
t = np.arange(int(48000 * seconds))
tone = (np.sin(2 * np.pi * 440 * t / 48000) * 8000).astype(np.int16)
async def main():
    return await asyncio.gather(
        *(run_call(url, [tone], token, tail_s=0.2, loopback_only=True) for _ in range(calls))
    )
print(json.dumps([r["frames_sent"][0] for r in asyncio.run(main())]))
"""


async def _measure(decode: bool) -> dict[str, object]:
    engine = FakeEngine()
    async with Calls(engine, WebRtcConfig(loopback_only=True, decode_in_aiortc=decode)) as calls:
        app = web.Application()
        app.add_routes(whip_routes(calls, authorize=static_bearer(TOKEN)))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            cpu0, wall0 = time.process_time(), time.monotonic()
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CLIENT,
                url,
                TOKEN,
                str(CALLS),
                str(SECONDS),
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            # Steady state: all calls streaming, none ending (no setup, no teardown).
            while len(engine.sessions) < CALLS:
                await asyncio.wait_for(engine.call_started.wait(), 30)
                engine.call_started.clear()
            for session in list(engine.sessions.values()):
                await asyncio.wait_for(session.first_frame.wait(), 30)
            steady_cpu0, steady_wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(STEADY_S)
            steady_cpu = time.process_time() - steady_cpu0
            steady_wall = time.monotonic() - steady_wall0
            out, _ = await client.communicate()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        finally:
            await runner.cleanup()
    assert client.returncode == 0
    sent = json.loads(out)
    received = [len(s.tracks[0].frames) for s in engine.sessions.values()]
    assert sorted(received) == sorted(sent)
    audio_s = sum(sent) * 0.02
    return {
        "decode_in_aiortc": decode,
        "calls": CALLS,
        "server_cpu_s": round(cpu, 3),
        "wall_s": round(wall, 2),
        # whole calls (setup, ICE/DTLS, streaming, teardown): CPU seconds per second of call audio
        "cpu_per_call_pct_of_core": round(100 * cpu / audio_s, 2),
        "steady_cpu_per_call_pct_of_core": round(100 * steady_cpu / (steady_wall * CALLS), 2),
    }


async def test_cpu_per_call() -> None:
    results = [await _measure(decode) for decode in (False, True, False, True)]
    for r in results:
        print(json.dumps(r))
    assert all(float(str(r["cpu_per_call_pct_of_core"])) < 10.0 for r in results)

"""A real browser calls the worker: headless Chromium's fake microphone -> /demo -> WHIP -> fake engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web

from tests.browser_util import (
    CHROMEDRIVER,
    CHROMIUM,
    best_correlation,
    chromium,
    envelope,
    read_wav,
    require_tools,
    speech_wav,
)
from tests.fakes_engine import FakeEngine
from worker.webrtc.peer import Calls, WebRtcConfig
from worker.webrtc.whip import demo_routes, static_bearer, whip_routes

pytestmark = pytest.mark.slow
TOKEN = "browser-test-token"


@pytest.fixture
async def worker() -> AsyncIterator[tuple[str, FakeEngine]]:
    engine = FakeEngine()
    async with Calls(engine, WebRtcConfig(loopback_only=True)) as calls:
        app = web.Application()
        app.add_routes(whip_routes(calls, authorize=static_bearer(TOKEN)))
        app.add_routes(demo_routes())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}", engine
        finally:
            await calls.close()
            await runner.cleanup()


def _drive(driver: Any, url: str, token: str, talk_s: float) -> dict[str, Any]:
    """Blocking Selenium steps (run in a thread so the worker's event loop keeps serving)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "call").click()
    deadline = time.monotonic() + 20
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.converseDemo")
        if state["state"] in ("connected", "failed"):
            break
        time.sleep(0.1)
    if state.get("state") != "connected":
        return state
    time.sleep(talk_s)
    driver.find_element(By.ID, "hangup").click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.converseDemo")
        if state["state"] == "ended":
            break
        time.sleep(0.1)
    return state


async def test_chromium_calls_the_worker_from_the_demo_page(
    worker: tuple[str, FakeEngine], tmp_path: Path
) -> None:
    require_tools(CHROMIUM, CHROMEDRIVER, "espeak-ng", "sox")
    url, engine = worker
    wav = speech_wav(tmp_path, "Hello, this is a test call from the browser. Please call me back tomorrow.")
    sent = read_wav(wav)
    driver = await asyncio.to_thread(chromium, wav, tmp_path / "profile")
    try:
        state = await asyncio.to_thread(
            _drive, driver, f"{url}/demo?loopback", TOKEN, len(sent) / 48000 + 1.0
        )
    finally:
        await asyncio.to_thread(driver.quit)
    assert state["state"] == "ended", state
    session = engine.only()
    assert session.call_id == state["callId"]
    await asyncio.wait_for(session.finished.wait(), 10)
    assert session.finishes == [("ended", "client hung up")]
    (pipeline,) = session.tracks
    assert len(pipeline.frames) > 100 and pipeline.lost == 0
    stamps = [f.timestamp for f in pipeline.frames]
    assert stamps == sorted(stamps) and stamps[0] == 0
    codec = av.CodecContext.create("libopus", "r")
    pcm = np.concatenate(
        [
            out.to_ndarray().reshape(-1, 2)[:, 0]
            for f in pipeline.frames
            for out in codec.decode(av.Packet(f.payload))
        ]
    )
    # The fake microphone starts playing at getUserMedia, a little before media flows: compare loudness
    # envelopes (10 ms) at the best lag within 2 s.
    corr = best_correlation(envelope(pcm), envelope(sent), max_lag=200)
    assert corr > 0.7, corr

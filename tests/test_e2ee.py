"""End-to-end encrypted calls (issue 9): SFrame-protected Opus from an aiortc client through WHIP to the
pipeline, unprotected only at the worker's edge; wrong keys, rotation, policy; the send seam pinned."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import secrets
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiortc
import aiortc.rtcrtpsender as rtcrtpsender
import av
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web

from media import opus_send_tap
from media.asr import AsrScheduler, FakeTranscriber
from media.opus_tap import OpusTap, TappedFrame
from media.sframe import parse_header, protect, unprotect
from storage.keys import LocalKeyFile
from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
from tests.browser_util import best_correlation, envelope
from tests.fakes_engine import FakeEngine, FakeSession
from tests.support import FIXTURES
from worker.calls.engine import Engine, EngineConfig
from worker.cli import call as cmd_call
from worker.cli.call_client import (
    FrameProtector,
    WhipClientError,
    b64url,
    encode_track,
    run_call,
    track_frames,
)
from worker.cli.errors import CommandError
from worker.metrics import Metrics
from worker.webrtc.e2ee import (
    CLEAR_REASON,
    REQUIRED_REASON,
    Dropped,
    E2eeConfig,
    E2eeState,
    Opened,
    SFrameKeyError,
    SFrameParams,
    sframe_hook,
)
from worker.webrtc.peer import Calls, WebRtcConfig, loopback_only
from worker.webrtc.whip import SFRAME_KEYS_HEADER, SFRAME_SUITE_HEADER, static_bearer, whip_routes

TOKEN = "e2ee-token"
SDP_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sdp"}
KEY_A = bytes(range(16))
KEY_B = bytes(range(100, 116))


def bursts(seconds: float) -> npt.NDArray[np.int16]:
    """A 440 Hz tone switched on and off every 200-400 ms: an envelope worth correlating."""
    t = np.arange(int(48000 * seconds))
    gate = ((t // 9600) % 3 != 0) & ((t // 14400) % 2 == 0)
    out: npt.NDArray[np.int16] = (np.sin(2 * np.pi * 440 * t / 48000) * 8000 * gate).astype(np.int16)
    return out


def decode_all(payloads: list[bytes]) -> tuple[npt.NDArray[Any], int]:
    """Decode Opus payloads (left channel); returns (pcm, number of payloads libopus refused)."""
    codec = av.CodecContext.create("libopus", "r")
    out: list[npt.NDArray[Any]] = []
    errors = 0
    for p in payloads:
        try:
            frames = codec.decode(av.Packet(p))
        except (av.error.FFmpegError, ValueError):
            errors += 1
            continue
        out.extend(f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames)
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int16)), errors


@dataclass
class Server:
    url: str
    engine: Any
    calls: Calls
    metrics: Metrics
    seam: list[bytes]  # every payload the worker's receive seam (media.opus_tap) saw, in order

    def failures(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value("converse_sframe_failures_total", {"reason": reason})
        return value or 0.0


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
def seam(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Capture the payloads at the worker's receive seam (what an on-path observer of SRTP plaintext sees)."""
    captured: list[bytes] = []
    original = OpusTap._put  # every frame the tap takes: from aiortc's decoder thread or its jitter buffer

    def spy(self: OpusTap, frame: TappedFrame) -> None:
        captured.append(frame.payload)
        original(self, frame)

    monkeypatch.setattr(OpusTap, "_put", spy)
    return captured


MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server(seam: list[bytes]) -> AsyncIterator[MakeServer]:
    runners: list[tuple[web.AppRunner, Calls]] = []

    async def make(
        engine: Any = None, *, e2ee: E2eeConfig | None = None, metrics: Metrics | None = None
    ) -> Server:
        engine = engine if engine is not None else FakeEngine()
        metrics = metrics or getattr(engine, "metrics", None) or Metrics()
        calls = Calls(engine, WebRtcConfig(loopback_only=True))
        app = web.Application()
        hook = sframe_hook(metrics, e2ee or E2eeConfig())
        app.add_routes(whip_routes(calls, authorize=static_bearer(TOKEN), on_sframe=hook))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append((runner, calls))
        return Server(f"http://127.0.0.1:{runner.addresses[0][1]}", engine, calls, metrics, seam)

    yield make
    for runner, calls in runners:
        await calls.close()
        await runner.cleanup()


# -- the send seam -----------------------------------------------------------------------------------


def test_aiortc_send_seam_is_what_the_tap_expects() -> None:
    """Fails when an aiortc upgrade moves the seam: then re-read _next_encoded_frame and adapt the tap."""
    assert aiortc.__version__ == "1.16.0"
    opus_send_tap.install()
    assert getattr(rtcrtpsender, opus_send_tap.SEAM) is opus_send_tap._tapped_get_encoder
    assert list(inspect.signature(opus_send_tap._original_get_encoder).parameters) == ["codec"]
    source = inspect.getsource(rtcrtpsender.RTCRtpSender._next_encoded_frame)
    for needle in (
        "self.__encoder = get_encoder(codec)",
        "None, self.__encoder.encode, data, force_keyframe",
        "payloads, timestamp = self.__encoder.pack(data)",
    ):
        assert needle in source
    assert "self.__rtp_task = asyncio.ensure_future(self._run_rtp(" in inspect.getsource(
        rtcrtpsender.RTCRtpSender.send
    )
    run_rtp = inspect.getsource(rtcrtpsender.RTCRtpSender._run_rtp)
    assert "enc_frame = await self._next_encoded_frame(codec)" in run_rtp
    assert "packet.payload = payload" in run_rtp


# -- sans-IO unprotect, rotation and policy ------------------------------------------------------------


def _state(**kw: Any) -> tuple[E2eeState, list[str]]:
    seen: list[str] = []
    config = kw.pop("config", E2eeConfig(grace_s=2.0, fail_first_frames=5, clear_frames=3))
    return E2eeState(4, kw.pop("keys", {1: KEY_A}), config=config, on_failure=seen.append, **kw), seen


def test_unprotect_counts_each_failure_by_reason() -> None:
    state, seen = _state()
    t = state.track(0)
    frame = protect(4, KEY_A, 1, 7, b"opus")
    assert t.open(frame, 0.0) == Opened(b"opus")
    assert t.open(frame, 0.0) == Dropped("replay")
    assert t.open(protect(4, KEY_B, 1, 8, b"opus"), 0.0) == Dropped("auth")
    assert t.open(protect(4, KEY_A, 9, 0, b"opus"), 0.0) == Dropped("unknown_kid")
    assert t.open(b"", 0.0) == Dropped("malformed")
    assert seen == ["replay", "auth", "unknown_kid", "malformed"]
    assert dict(t.failures) == {"replay": 1, "auth": 1, "unknown_kid": 1, "malformed": 1}


def test_a_frame_replayed_into_another_track_is_refused() -> None:
    state, seen = _state()
    t0, t1 = state.track(0), state.track(1)
    # The clients share one sender per KID across a call's tracks: their CTRs interleave.
    frames = [protect(4, KEY_A, 1, ctr, b"frame%d" % ctr) for ctr in range(10)]
    for ctr, frame in enumerate(frames):
        assert isinstance((t0 if ctr % 2 == 0 else t1).open(frame, 0.0), Opened)
    assert t1.open(frames[4], 0.0) == Dropped("replay")  # a track-0 frame injected into track 1
    assert t0.open(frames[5], 0.0) == Dropped("replay")
    assert seen == ["replay", "replay"]
    assert isinstance(t1.open(protect(4, KEY_A, 1, 10, b"next"), 0.0), Opened)


def test_rotation_keeps_the_old_kid_for_the_grace_period_only() -> None:
    state, _ = _state(keys={1: KEY_A, 2: KEY_B})
    t = state.track(0)
    assert isinstance(t.open(protect(4, KEY_A, 1, 0, b"a"), 10.0), Opened)
    assert isinstance(t.open(protect(4, KEY_B, 2, 0, b"b"), 11.0), Opened)  # rotation: KID 1 retires at 13
    assert t.active == 2
    assert isinstance(t.open(protect(4, KEY_A, 1, 1, b"late"), 12.9), Opened)  # late frame, in grace
    assert t.active == 2  # no rotation backwards
    assert t.open(protect(4, KEY_A, 1, 2, b"too late"), 13.0) == Dropped("unknown_kid")
    assert t.open(protect(4, KEY_B, 2, 0, b"b"), 13.1) == Dropped("replay")  # the window applies


def test_keys_added_mid_call_rotate_and_are_validated() -> None:
    state, _ = _state()
    t = state.track(0)
    assert isinstance(t.open(protect(4, KEY_A, 1, 0, b"a"), 0.0), Opened)
    state.add_sframe_keys(4, {2: KEY_B})
    assert isinstance(t.open(protect(4, KEY_B, 2, 0, b"b"), 1.0), Opened)
    assert state.kids == [1, 2]
    with pytest.raises(SFrameKeyError, match=r"^SFrame KID 2 is already provisioned for this call$"):
        state.add_sframe_keys(4, {2: KEY_A})
    with pytest.raises(SFrameKeyError, match=r"^SFrame suite 5 differs from the call's suite 4$"):
        state.add_sframe_keys(5, {3: KEY_A})
    with pytest.raises(SFrameKeyError, match=r"^SFrame key for KID 3 must be 16-64 bytes$"):
        state.add_sframe_keys(4, {3: b"short"})
    assert isinstance(SFrameKeyError("x"), ValueError)  # the admin API maps ValueError to 400
    assert KEY_A.hex() not in repr(SFrameParams(4, {1: KEY_A})) and "keys" not in repr(SFrameParams(4, {}))


def test_first_frames_failing_end_the_call_once() -> None:
    state, _ = _state()
    t = state.track(0)
    results = [t.open(protect(4, KEY_B, 1, n, b"x"), 0.0) for n in range(7)]
    assert [r.end_call for r in results if isinstance(r, Dropped)] == [None] * 4 + [
        "end-to-end encryption: the first 5 frames of track 0 failed SFrame authentication",
        None,
        None,
    ]


def test_clear_opus_ends_a_call_when_e2ee_is_required() -> None:
    from media.opus import OpusEncoder

    enc = OpusEncoder()
    tone = bursts(0.2)
    clear = [enc.encode(tone[i * 960 : (i + 1) * 960].tobytes()) for i in range(8)]
    clear = [c for c in clear if c]
    state, _ = _state(required=True)
    t = state.track(0)
    assert isinstance(t.open(protect(4, KEY_A, 1, 0, b"\xfc\xff\xfe"), 0.0), Opened)
    results = [t.open(c, 1.0) for c in clear[:3]]
    assert [r.end_call for r in results if isinstance(r, Dropped)] == [None, None, CLEAR_REASON]
    # Not required: clear frames are dropped and counted, the call goes on.
    state2, _ = _state(required=False)
    t2 = state2.track(0)
    assert isinstance(t2.open(protect(4, KEY_A, 1, 0, b"x"), 0.0), Opened)
    assert all(isinstance(r, Dropped) and r.end_call is None for r in (t2.open(c, 1.0) for c in clear))


# -- aiortc client -> WHIP -> worker -------------------------------------------------------------------


async def test_protected_call_reaches_the_pipeline_as_opus_and_the_wire_carries_none(
    make_server: MakeServer,
) -> None:
    server = await make_server()
    key = secrets.token_bytes(16)
    sent = bursts(3.0)
    protector = FrameProtector(4, key, 5)
    result = await run_call(server.url, [sent], TOKEN, tail_s=0.3, sframe=protector)
    assert result["server"]["status"] == "ended"
    session = server.engine.only()
    (pipeline,) = session.tracks
    seam = list(server.seam)
    assert len(seam) > 100 and len(pipeline.frames) == len(seam) and pipeline.lost == 0
    assert protector.protected >= len(seam)
    assert sum(server.failures(r) for r in ("auth", "replay", "unknown_kid", "malformed")) == 0
    # On the wire (inside SRTP): each payload is an SFrame header for KID 5 and AES-GCM ciphertext...
    plain = {f.payload for f in pipeline.frames}
    for payload in seam:
        kid, _, hlen = parse_header(payload)
        assert kid == 5 and len(payload) == hlen + len(unprotect(4, key, payload)) + 16
        assert payload not in plain and payload[hlen : hlen + 16] not in b"".join(plain)
    # ...that libopus cannot turn into the audio sent (it refuses it or decodes noise),
    raw_pcm, _ = decode_all(seam)
    assert len(raw_pcm) == 0 or best_correlation(envelope(raw_pcm), envelope(sent), max_lag=100) < 0.5
    # while the frames pushed to the pipeline are the Opus frames, in order, and decode to what was sent.
    stamps = [f.timestamp for f in pipeline.frames]
    assert stamps == sorted(stamps) and stamps[0] == 0
    pcm, errors = decode_all([f.payload for f in pipeline.frames])
    assert errors == 0
    assert best_correlation(envelope(pcm), envelope(sent), max_lag=100) > 0.8


async def test_pre_encoded_packets_arrive_byte_for_byte(make_server: MakeServer) -> None:
    """The benchmark clients' path: Opus packets encoded before the call are sent as they are (protected
    here too), and the pipeline gets exactly those packets, in order, none lost."""
    server = await make_server()
    sent = bursts(2.0)
    packets = encode_track(sent, track_frames(len(sent), 0.3))
    protector = FrameProtector(4, secrets.token_bytes(16), 3)
    result = await run_call(server.url, [sent], TOKEN, tail_s=0.3, sframe=protector, packets=[packets])
    assert result["server"]["status"] == "ended" and result["frames_sent"] == [len(packets)]
    (pipeline,) = server.engine.only().tracks
    assert pipeline.lost == 0
    assert [f.payload for f in pipeline.frames] == packets
    assert [f.timestamp for f in pipeline.frames] == [i * 960 for i in range(len(packets))]
    with pytest.raises(WhipClientError, match="packets for 2 tracks, fixture has 1"):
        await run_call(server.url, [sent], TOKEN, packets=[packets, packets])


class FailingProtector(FrameProtector):
    """Protects `ok` frames, then raises (as a CTR-exhausted sender would)."""

    def __init__(self, ok: int) -> None:
        super().__init__(4, KEY_A, 1)
        self.ok = ok

    def __call__(self, payload: bytes) -> bytes:
        if self.protected >= self.ok:
            raise RuntimeError("cannot protect")
        return super().__call__(payload)


async def test_a_payload_that_cannot_be_protected_is_never_sent(make_server: MakeServer) -> None:
    server = await make_server()
    result = await run_call(server.url, [bursts(2.0)], TOKEN, tail_s=0.2, sframe=FailingProtector(20))
    assert result["frames_sent"][0] < 100  # aiortc stopped the track when protection failed
    (pipeline,) = server.engine.only().tracks
    assert 0 < len(server.seam) <= 20 and len(pipeline.frames) == len(server.seam)
    assert all(parse_header(p)[0] == 1 for p in server.seam)
    assert sum(server.failures(r) for r in ("auth", "replay", "unknown_kid", "malformed")) == 0


async def test_wrong_key_pushes_nothing_counts_every_frame_and_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server(e2ee=E2eeConfig(fail_first_frames=50))
    wrong = {SFRAME_KEYS_HEADER: f"1={b64url(KEY_B)}"}  # the worker is told another key than the client's
    with contextlib.suppress(WhipClientError):  # the worker ends the call; the client may see it close
        await run_call(
            server.url, [bursts(2.0)], TOKEN, tail_s=0.2, headers=wrong, sframe=FrameProtector(4, KEY_A, 1)
        )
    session: FakeSession = server.engine.only()
    await asyncio.wait_for(session.finished.wait(), 10)
    assert session.finishes == [
        ("failed", "end-to-end encryption: the first 50 frames of track 0 failed SFrame authentication")
    ]
    (pipeline,) = session.tracks
    assert pipeline.frames == []
    assert pipeline.lost >= 50 and server.failures("auth") == pipeline.lost
    assert server.failures("unknown_kid") == server.failures("replay") == server.failures("malformed") == 0
    assert session.e2ee is not None and session.e2ee._keys == {}  # forgotten when the call ended
    assert len(server.calls) == 0


async def test_mid_call_rotation_loses_no_frame(make_server: MakeServer) -> None:
    server = await make_server(e2ee=E2eeConfig(grace_s=0.5))
    protector = FrameProtector(4, KEY_A, 1, announce={2: KEY_B})

    async def rotate() -> None:
        await asyncio.wait_for(server.engine.call_started.wait(), 10)
        await asyncio.sleep(1.2)
        protector.rotate(2, KEY_B)

    rotation = asyncio.create_task(rotate())
    result = await run_call(server.url, [bursts(2.5)], TOKEN, tail_s=0.3, sframe=protector)
    await rotation
    assert result["server"]["status"] == "ended"
    (pipeline,) = server.engine.only().tracks
    kids = [parse_header(p)[0] for p in server.seam]
    assert kids == sorted(kids) and set(kids) == {1, 2}
    assert len(pipeline.frames) == len(server.seam) == result["packets_sent"][0] and pipeline.lost == 0
    assert sum(server.failures(r) for r in ("auth", "replay", "unknown_kid", "malformed")) == 0


async def test_rotation_with_a_key_added_through_the_engine_call_loses_nothing(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """Real engine (memory stores, fake transcriber): the new KID arrives mid-call via `add_sframe_keys`
    (what the admin API calls); the recording is sealed under the track key, nothing is lost."""
    from media.fixtures import load_fixture

    transcripts, recordings = MemoryTranscriptStore(), MemoryRecordingStore()
    sched = AsrScheduler(FakeTranscriber(["hello there"]), workers=1)
    engine = Engine(
        transcripts=transcripts,
        recordings=recordings,
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=sched,
        metrics=Metrics(),
        config=EngineConfig(flush_interval_s=0.2),
    )
    try:
        server = await make_server(engine)
        pcm = load_fixture(FIXTURES / "example_call.flac").tracks[0].pcm[: 48000 * 5]
        protector = FrameProtector(4, KEY_A, 1)
        first_call = asyncio.Event()
        start_call = engine.start_call

        async def spy_start(**kw: Any) -> Any:
            call = await start_call(**kw)
            first_call.set()
            return call

        engine.start_call = spy_start  # type: ignore[method-assign]

        async def rotate() -> None:
            await asyncio.wait_for(first_call.wait(), 10)
            (call,) = engine.active_calls()
            await asyncio.sleep(1.0)
            call.add_sframe_keys(4, {2: KEY_B})
            with pytest.raises(ValueError, match="already provisioned"):
                call.add_sframe_keys(4, {2: KEY_A})
            await asyncio.sleep(1.0)
            protector.rotate(2, KEY_B)

        rotation = asyncio.create_task(rotate())
        result = await run_call(server.url, [pcm], TOKEN, tail_s=1.0, sframe=protector)
        await rotation
        summary = result["server"]
        assert summary["status"] == "ended", summary
        assert summary["frames_lost"] == 0
        assert summary["frames_received"] == summary["frames_sealed"] == len(server.seam)
        assert {parse_header(p)[0] for p in server.seam} == {1, 2}
        assert server.failures("auth") == server.failures("unknown_kid") == 0
        (info,) = await transcripts.list_calls()
        assert info.status == "ended"
    finally:
        await sched.aclose()


async def test_e2ee_required_refuses_a_clear_call(make_server: MakeServer) -> None:
    server = await make_server(FakeEngine(e2ee_required=True))
    result = await _post(server, {})
    assert result == (403, REQUIRED_REASON + "\n")
    (session,) = server.engine.sessions.values()
    assert session.finishes == [("failed", REQUIRED_REASON)]
    assert len(server.calls) == 0


async def test_e2ee_required_ends_a_call_that_sends_clear_opus(make_server: MakeServer) -> None:
    server = await make_server(FakeEngine(e2ee_required=True), e2ee=E2eeConfig(clear_frames=10))
    keys = {SFRAME_SUITE_HEADER: "4", SFRAME_KEYS_HEADER: f"1={b64url(KEY_A)}"}
    with contextlib.suppress(WhipClientError):
        await run_call(server.url, [bursts(2.0)], TOKEN, tail_s=0.2, headers=keys)  # no protector: clear
    session: FakeSession = server.engine.only()
    await asyncio.wait_for(session.finished.wait(), 10)
    assert session.finishes == [("failed", CLEAR_REASON)]
    assert session.tracks[0].frames == []


async def test_unusable_keys_are_refused_before_the_call_starts(make_server: MakeServer) -> None:
    server = await make_server()
    status, text = await _post(server, {SFRAME_KEYS_HEADER: "1=AAAA"})
    assert (status, text) == (400, "SFrame key for KID 1 must be 16-64 bytes\n")
    assert "AAAA" not in text


async def _post(server: Server, headers: dict[str, str]) -> tuple[int, str]:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/whip", data=offer, headers={**SDP_HEADERS, **headers}) as resp,
    ):
        return resp.status, await resp.text()


# -- the `call` command ------------------------------------------------------------------------------


def test_call_command_validates_sframe_options() -> None:
    assert cmd_call.sframe_protector(None, 1, 4) is None
    p = cmd_call.sframe_protector(b64url(KEY_A), 3, 4)
    assert p is not None and (p.suite, p.kid) == (4, 3) and b64url(KEY_A) not in repr(p)
    assert p.headers() == {SFRAME_SUITE_HEADER: "4", SFRAME_KEYS_HEADER: f"3={b64url(KEY_A)}"}
    for args, message in (
        (("!!!", 1, 4), "--sframe-key is not base64url"),
        ((b64url(b"short"), 1, 4), "--sframe-key must decode to 16-64 bytes"),
        ((b64url(KEY_A), 1, 9), "--suite: unsupported SFrame suite 9 (1-5)"),
        ((b64url(KEY_A), -1, 4), "--kid must be 0..2^64-1"),
    ):
        with pytest.raises(CommandError) as info:
            cmd_call.sframe_protector(*args)
        assert str(info.value) == message


async def test_call_command_sends_protected_audio(
    make_server: MakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await make_server()
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(bursts(1.5).tobytes())
    args = argparse.Namespace(
        url=server.url,
        fixture=str(wav),
        token=TOKEN,
        tail=0.2,
        json=True,
        sframe_key=b64url(KEY_A),
        kid=7,
        suite=4,
        counter_dir=str(tmp_path / "ctr"),
        media_streams=False,
    )
    assert await cmd_call.run(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["sframe"]["kid"] == 7 and out["sframe"]["suite"] == 4
    assert b64url(KEY_A) not in json.dumps(out)
    (pipeline,) = server.engine.only().tracks
    assert len(pipeline.frames) == len(server.seam) > 50
    assert all(parse_header(p)[0] == 7 for p in server.seam)
    assert os.environ.get(cmd_call.SFRAME_KEY_ENV) is None

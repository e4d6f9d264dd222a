"""WHIP + WebRTC edge end to end on 127.0.0.1: aiortc clients -> aiohttp server -> fake engine."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack

from tests.fakes_engine import FakeEngine
from worker.calls.contracts import CallSession
from worker.cli.call_client import FixtureTrack, WhipClientError, run_call
from worker.webrtc.peer import Calls, WebRtcConfig, keep_loopback_candidates, loopback_only, parse_offer
from worker.webrtc.whip import (
    SFrameParams,
    WhipLimits,
    demo_routes,
    parse_sframe_headers,
    static_bearer,
    whip_routes,
)

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SDP_HEADERS = {**AUTH, "Content-Type": "application/sdp"}


def tone(seconds: float, freq: float = 440.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(48000 * seconds))
    return (np.sin(2 * np.pi * freq * t / 48000) * 8000).astype(np.int16)


@dataclass
class Server:
    url: str
    engine: FakeEngine
    calls: Calls
    sframe: list[SFrameParams]

    @property
    def whip(self) -> str:
        return self.url + "/whip"

    def registry_gauge(self, name: str) -> float | None:
        return self.calls.registry.get_sample_value(name)


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    runners: list[tuple[web.AppRunner, Calls]] = []

    async def make(engine: FakeEngine | None = None, *, sframe_hook: bool = True, **config: Any) -> Server:
        engine = engine or FakeEngine()
        calls = Calls(engine, WebRtcConfig(loopback_only=True, **config))
        seen: list[SFrameParams] = []

        async def on_sframe(session: CallSession, params: SFrameParams) -> None:
            seen.append(params)

        app = web.Application()
        app.add_routes(
            whip_routes(
                calls,
                authorize=static_bearer(TOKEN),
                limits=WhipLimits(retry_after_s=7),
                on_sframe=on_sframe if sframe_hook else None,
            )
        )
        app.add_routes(demo_routes())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append((runner, calls))
        return Server(f"http://127.0.0.1:{runner.addresses[0][1]}", engine, calls, seen)

    yield make
    for runner, calls in runners:
        await calls.close()
        await runner.cleanup()
    leftovers = [
        t for t in asyncio.all_tasks() if t.get_name().startswith(("call-", "drain-", "pump-", "no-media"))
    ]
    assert leftovers == []


async def offer_sdp(
    track: MediaStreamTrack | None = None, kind: str = "audio", codec: str = "audio/opus"
) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track or kind, direction="sendonly")
    if kind == "audio":
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == codec]
        )
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


class Peer:
    """A hand-driven WHIP client for lifecycle tests."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(track, direction="sendonly")
        self.location = ""

    async def call(self, server: Server) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.whip, data=self.pc.localDescription.sdp, headers=SDP_HEADERS) as resp,
        ):
            assert resp.status == 201, await resp.text()
            self.location = resp.headers["Location"]
            answer = await resp.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return self.location.rsplit("/", 1)[-1]


class Mute(MediaStreamTrack):
    """A track that never produces a frame: the peer connects and sends no media."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def post(url: str, body: bytes | str, headers: dict[str, str]) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text(), resp.headers


# -- the happy path -----------------------------------------------------------------------------------


async def test_frames_received_equal_frames_sent_in_order(make_server: MakeServer) -> None:
    server = await make_server()
    result = await run_call(server.url, [tone(1.0), tone(1.0, 660.0)], TOKEN, tail_s=0.5)
    session = server.engine.only()
    assert result["call_id"] == session.call_id
    assert result["location"] == f"{server.whip}/{session.call_id}"
    assert session.source == "whip" and session.org_id == "default"
    assert session.finishes == [("ended", "client hung up")]  # finish() once, by the DELETE
    assert result["server"]["frames_received"] == sum(result["frames_sent"])
    for pipeline, sent, packets in zip(
        session.tracks, result["frames_sent"], result["packets_sent"], strict=True
    ):
        assert len(pipeline.frames) == sent == packets == 75
        assert [f.timestamp for f in pipeline.frames] == [960 * i for i in range(sent)]
        assert pipeline.lost == 0 and all(f.pcm is None for f in pipeline.frames)
    # Each track is its own pipeline: decode both and find their own tones.
    for pipeline, freq in zip(session.tracks, (440, 660), strict=True):
        codec = av.CodecContext.create("libopus", "r")
        pcm = np.concatenate(
            [
                out.to_ndarray().reshape(-1, 2)[:, 0]
                for f in pipeline.frames
                for out in codec.decode(av.Packet(f.payload))
            ]
        ).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm[:48000]))
        assert abs(int(np.argmax(spectrum)) - freq) <= 2
    assert len(server.calls) == 0


async def test_backpressure_loses_nothing(make_server: MakeServer) -> None:
    server = await make_server(FakeEngine(push_delay_s=0.03))  # the pipeline is slower than real time
    result = await run_call(server.url, [tone(1.0)], TOKEN, tail_s=0.2)
    (pipeline,) = server.engine.only().tracks
    assert len(pipeline.frames) == result["frames_sent"][0] and pipeline.lost == 0


async def test_overflow_fails_the_call_and_counts_every_frame(make_server: MakeServer) -> None:
    server = await make_server(FakeEngine(push_delay_s=0.2), tap_max_frames=5)
    track = FixtureTrack(tone(2.0), 100)
    peer = Peer(track)
    call_id = await peer.call(server)
    assert await wait_finished(server, call_id) == [("failed", "track 0: receive queue overflow")]
    (pipeline,) = server.engine.sessions[call_id].tracks
    assert pipeline.lost > 5 and len(pipeline.frames) + pipeline.lost <= track.frames_sent
    await peer.pc.close()


async def test_eight_concurrent_calls_lose_nothing(make_server: MakeServer) -> None:
    server = await make_server()
    results = await asyncio.gather(
        *(run_call(server.url, [tone(2.0, 300.0 + 50 * i)], TOKEN, tail_s=0.3) for i in range(8))
    )
    assert len(server.engine.sessions) == 8
    for result in results:
        session = server.engine.sessions[result["call_id"]]
        (pipeline,) = session.tracks
        assert len(pipeline.frames) == result["frames_sent"][0] == result["packets_sent"][0]
        assert [f.timestamp for f in pipeline.frames] == [960 * i for i in range(len(pipeline.frames))]
        assert pipeline.lost == 0 and session.finishes == [("ended", "client hung up")]


# -- lifecycle ----------------------------------------------------------------------------------------


async def wait_finished(server: Server, call_id: str, wait_s: float = 10.0) -> list[tuple[str, str | None]]:
    session = server.engine.sessions[call_id]
    await asyncio.wait_for(session.finished.wait(), wait_s)
    await asyncio.sleep(0)
    return session.finishes


async def test_no_media_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server(no_media_timeout_s=1.0)
    peer = Peer(Mute())
    call_id = await peer.call(server)
    assert await wait_finished(server, call_id) == [("failed", "no media for 1 s")]
    await peer.pc.close()


async def test_max_call_length_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server(max_call_s=1.0)
    peer = Peer(FixtureTrack(tone(5.0), 250))
    call_id = await peer.call(server)
    assert await wait_finished(server, call_id) == [("ended", "maximum call length (1 s)")]
    assert len(server.engine.sessions[call_id].tracks[0].frames) > 10
    await peer.pc.close()


async def test_peer_closing_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server()
    peer = Peer(FixtureTrack(tone(5.0), 250))
    call_id = await peer.call(server)
    await asyncio.sleep(1.0)
    await peer.pc.close()  # no DELETE: DTLS close_notify ends the connection
    assert await wait_finished(server, call_id) == [("ended", "connection closed")]


async def test_cancelling_a_call_leaves_no_task(make_server: MakeServer) -> None:
    server = await make_server()
    peer = Peer(FixtureTrack(tone(5.0), 250))
    call_id = await peer.call(server)
    await asyncio.sleep(0.5)
    (task,) = server.calls.tasks()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.engine.sessions[call_id].finishes == [("failed", "call cancelled")]
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(("drain-", "pump-", "no-media"))] == []
    await peer.pc.close()


async def test_drain_refuses_new_calls_and_ends_active_ones_by_the_deadline(make_server: MakeServer) -> None:
    server = await make_server()
    peers = [Peer(FixtureTrack(tone(10.0), 500)) for _ in range(2)]
    ids = [await p.call(server) for p in peers]
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    drain = asyncio.create_task(server.calls.drain(1.0))
    await asyncio.sleep(0.1)
    status, text, headers = await post(server.whip, await offer_sdp(), SDP_HEADERS)
    assert (status, text, headers["Retry-After"]) == (503, "server is draining\n", "7")
    for call_id in ids:
        assert server.engine.sessions[call_id].finishes == []  # still running inside the grace period
    await drain
    assert 1.0 <= loop.time() - started < 4.0
    for call_id in ids:
        session = server.engine.sessions[call_id]
        assert session.finishes == [("ended", "server draining")]
        assert len(session.tracks[0].frames) > 40
    assert len(server.calls) == 0
    for p in peers:
        await p.pc.close()


async def test_drain_returns_early_when_calls_end(make_server: MakeServer) -> None:
    server = await make_server()
    call = asyncio.create_task(run_call(server.url, [tone(0.5)], TOKEN, tail_s=0.1))
    await asyncio.wait_for(server.engine.call_started.wait(), 10)
    await asyncio.wait_for(server.engine.only().first_frame.wait(), 10)  # answered and streaming
    await asyncio.wait_for(server.calls.drain(30.0), 10.0)
    result = await call
    assert server.engine.only().finishes == [("ended", "client hung up")]
    assert len(server.engine.only().tracks[0].frames) == result["frames_sent"][0]


async def until(predicate: Callable[[], bool], wait_s: float = 10.0) -> float:
    """Seconds until `predicate()` holds (fails the test after `wait_s`)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        assert loop.time() - start < wait_s, "condition not met in time"
        await asyncio.sleep(0.02)
    return loop.time() - start


async def test_capacity(make_server: MakeServer) -> None:
    server = await make_server(max_calls=1)
    peer = Peer(FixtureTrack(tone(3.0), 150))
    await peer.call(server)
    await until(lambda: server.calls.connected == 1)  # a slot is a connected call's
    status, text, headers = await post(server.whip, await offer_sdp(), SDP_HEADERS)
    assert (status, text, headers["Retry-After"]) == (503, "at capacity (1 calls)\n", "7")
    await peer.pc.close()


def half_open_ended(server: Server, reason: str) -> float:
    value = server.calls.registry.get_sample_value("converse_half_open_ended_total", {"reason": reason})
    return value or 0.0


async def test_half_open_offers_hold_no_call_slot_and_end_quickly(make_server: MakeServer) -> None:
    """Offers that never do ICE (their peer is gone) have their own small budget, the oldest ended for a
    newer one; they time out after connect_timeout_s without a teardown wait, and a real call gets in."""
    server = await make_server(max_calls=2, max_half_open=3, connect_timeout_s=1.0)
    offer = await offer_sdp(Mute())
    for _ in range(10):
        status, _, _ = await post(server.whip, offer, SDP_HEADERS)
        assert status == 201  # never refused: the oldest half-open session makes room
        assert server.calls.half_open <= 3 and server.calls.connected == 0
    await until(lambda: half_open_ended(server, "evicted") == 7)
    assert server.registry_gauge("converse_half_open_calls") == 3
    result = await run_call(server.url, [tone(1.0)], TOKEN, tail_s=0.2)  # while 3 are still half-open
    assert result["server"]["frames_received"] == result["frames_sent"][0] > 40
    await until(lambda: len(server.calls) == 0, 3.0)
    assert half_open_ended(server, "evicted") == 8  # the real call's offer made room too
    assert half_open_ended(server, "timeout") == 2
    assert server.calls.capacity() == {
        "connected_calls": 0,
        "max_calls": 2,
        "half_open_calls": 0,
        "max_half_open": 3,
    }


async def test_half_open_offers_connecting_at_once_never_exceed_max_calls(make_server: MakeServer) -> None:
    server = await make_server(max_calls=1)
    peers = [Peer(Mute()), Peer(Mute())]
    ids = [await p.call(server) for p in peers]  # both admitted: neither has connected yet
    await until(lambda: sum(server.calls.get(i) is None for i in ids) == 1)
    assert server.calls.connected == 1
    ended = next(s for s in server.engine.sessions.values() if s.finishes)
    assert ended.finishes == [("failed", "at capacity")]
    for p in peers:
        await p.pc.close()


# -- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
async def server(make_server: MakeServer) -> Server:
    return await make_server()


async def test_bad_offers(server: Server) -> None:
    good = await offer_sdp()
    no_audio = await offer_sdp(kind="video")
    pcmu_only = await offer_sdp(codec="audio/pcmu")
    no_ice = (
        "\r\n".join(ln for ln in good.splitlines() if not ln.startswith(("a=ice-ufrag", "a=ice-pwd")))
        + "\r\n"
    )
    cases: list[tuple[bytes | str, dict[str, str], int, str]] = [
        (good, {"Content-Type": "application/sdp"}, 401, "missing bearer token"),
        (good, {"Content-Type": "application/sdp", "Authorization": "Bearer nope"}, 401, "invalid token"),
        (good, {**AUTH, "Content-Type": "text/plain"}, 415, "Content-Type must be application/sdp"),
        (good, AUTH, 415, "Content-Type must be application/sdp"),
        ("v=0\r\n" + "a=x\r\n" * 20000, SDP_HEADERS, 413, "offer larger than 65536 bytes"),
        ("hello", SDP_HEADERS, 400, "malformed SDP"),
        ("v=0\r\nm=audio x\r\n", SDP_HEADERS, 400, "malformed SDP"),
        (b"v=0\xff\xfe", SDP_HEADERS, 400, "malformed SDP"),
        (no_audio, SDP_HEADERS, 400, "offer has no audio"),
        (pcmu_only, SDP_HEADERS, 400, "no supported audio codec (need opus/48000/2)"),
        (no_ice, SDP_HEADERS, 400, "malformed SDP: ICE username fragment or password is missing"),
        (
            good,
            {**SDP_HEADERS, "Converse-SFrame-Suite": "4"},
            400,
            "Converse-SFrame-Suite without Converse-SFrame-Keys",
        ),
        (
            good,
            {**SDP_HEADERS, "Converse-SFrame-Suite": "9", "Converse-SFrame-Keys": "1=AAAA"},
            400,
            "unsupported SFrame suite 9",
        ),
        (
            good,
            {**SDP_HEADERS, "Converse-SFrame-Keys": "1=AAAA, x=AAAA"},
            400,
            "Converse-SFrame-Keys: bad entry 2",
        ),
    ]
    for body, headers, status, reason in cases:
        got = await post(server.whip, body, headers)
        assert (got[0], got[1]) == (status, reason + "\n"), reason
        assert got[2]["Content-Type"].startswith("text/plain")
    assert server.engine.sessions == {}  # nothing was started for any of them


async def test_delete_patch_options(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.delete(server.whip + "/nope", headers=AUTH) as resp:
            assert (resp.status, await resp.text()) == (404, "unknown call\n")
        async with http.delete(server.whip + "/nope") as resp:
            assert (resp.status, await resp.text()) == (401, "missing bearer token\n")
        async with http.patch(server.whip + "/x", headers=AUTH) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "DELETE, OPTIONS"
            assert (
                await resp.text()
                == "trickle ICE (PATCH) is not supported: send an offer with all candidates\n"
            )
        async with http.options(server.whip) as resp:
            assert resp.status == 204 and resp.headers["Accept-Post"] == "application/sdp"
        async with http.get(server.url + "/demo") as resp:
            assert resp.status == 200 and "demo.js" in await resp.text()


async def test_sframe_headers_reach_the_hook_and_are_not_echoed(server: Server) -> None:
    key = base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=").decode()
    headers = {**SDP_HEADERS, "Converse-SFrame-Suite": "0x0004", "Converse-SFrame-Keys": f"7={key}, 8={key}"}
    status, answer, _ = await post(server.whip, await offer_sdp(Mute()), headers)
    assert status == 201 and key not in answer
    (params,) = server.sframe
    assert params.suite == 4 and params.keys == {7: bytes(range(16)), 8: bytes(range(16))}
    assert key not in repr(params)


async def test_sframe_without_hook_is_refused(make_server: MakeServer) -> None:
    server = await make_server(sframe_hook=False)
    status, text, _ = await post(
        server.whip, await offer_sdp(), {**SDP_HEADERS, "Converse-SFrame-Keys": "1=AAAA"}
    )
    assert (status, text) == (400, "end-to-end encryption (SFrame) is not enabled on this worker\n")
    assert server.engine.sessions == {}


def test_sframe_header_defaults() -> None:
    assert parse_sframe_headers(None, None) is None
    assert parse_sframe_headers(None, "1=AAAA") == SFrameParams(suite=4, keys={1: b"\0\0\0"})


def test_parse_offer_and_loopback_filter() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:0\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 10.0.0.5 50001 typ host\r\n"
        "a=candidate:3 1 udp 2122260223 abc.local 50002 typ host\r\n"
    )
    assert parse_offer(sdp).audio_tracks == 1
    kept = keep_loopback_candidates(sdp)
    assert "127.0.0.1 50000" in kept and "10.0.0.5" not in kept and ".local" not in kept


async def test_client_reports_refusals(server: Server) -> None:
    with pytest.raises(WhipClientError, match=r"^WHIP POST 401: invalid token$"):
        await run_call(server.url, [tone(0.1)], "wrong")


async def test_ice_failure_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server(connect_timeout_s=2.0)
    status, _, headers = await post(server.whip, await offer_sdp(Mute()), SDP_HEADERS)  # that peer is gone
    assert status == 201
    call_id = headers["Location"].rsplit("/", 1)[-1]
    waited = await until(lambda: server.calls.get(call_id) is None)
    assert await wait_finished(server, call_id) == [("failed", "ICE/DTLS not connected after 2 s")]
    assert waited < 2.0 + 0.5  # no teardown wait (5 s) for receivers that never started
    assert half_open_ended(server, "timeout") == 1


async def test_video_is_answered_inactive(make_server: MakeServer) -> None:
    server = await make_server()
    track = FixtureTrack(tone(1.0), 50)
    peer = Peer(track)
    peer.pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    call_id = await peer.call(server)
    answer = peer.pc.remoteDescription.sdp
    video = answer[answer.index("m=video") :]
    assert "a=inactive" in video
    await asyncio.wait_for(track.done.wait(), 10)
    await asyncio.sleep(0.3)
    await server.calls.end(call_id, wait_s=10)
    (pipeline,) = server.engine.sessions[call_id].tracks
    assert len(pipeline.frames) == track.frames_sent
    await peer.pc.close()


async def test_engine_failure_during_setup_is_a_500(make_server: MakeServer) -> None:
    class Broken(FakeEngine):
        async def start_call(self, **kwargs: Any) -> Any:
            raise RuntimeError("database down")

    server = await make_server(Broken())
    status, text, _ = await post(server.whip, await offer_sdp(), SDP_HEADERS)
    assert (status, text) == (500, "call setup failed\n")
    assert len(server.calls) == 0

"""WebRTC calls: one aiortc RTCPeerConnection per call, one pipeline per received audio track.

`Calls` is the registry the WHIP handlers talk to: admission (capacity, draining), `start` (offer -> answer),
`end` (DELETE), `drain(deadline_s)` and `close()`. Each `Call` runs as one task owned by the registry, and
everything the call does runs in that task's TaskGroup: per track a `recv()` drainer (aiortc queues frames
without bound if nobody reads) and a pump that takes encoded Opus frames from `media.opus_tap` and pushes
them into the pipeline (awaiting `push` is the backpressure), plus a no-media watchdog. aiortc's callbacks
stay here and only ever resolve the call's end future.

End-to-end encrypted calls (`worker.webrtc.e2ee`): when the call session carries an `E2eeState` (attached by
the WHIP `on_sframe` hook before the answer), the pump SFrame-unprotects every payload before anything else
looks at it; a frame that fails is dropped and counted as lost. An org that requires E2EE gets calls
without SFrame keys refused (`E2eeRequiredError`, HTTP 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
    sdp,
)
from aiortc.mediastreams import MediaStreamError
from prometheus_client import CollectorRegistry, Counter, Gauge

from media.frames import FRAME_SAMPLES, EncodedFrame
from media.opus_tap import OpusTap, RtpTimeline, TapOverflowError, opus_packet_samples
from worker.calls.contracts import CallSession, CallSummary, Engine, TrackPipeline
from worker.webrtc.e2ee import (
    REQUIRED_REASON,
    Dropped,
    E2eeError,
    E2eeRequiredError,
    E2eeState,
    TrackUnprotector,
    e2ee_of,
    requires_e2ee,
)

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"


class CallError(Exception):
    """Base of the call edge's errors; messages are one line, with ids and counts only."""


class OfferError(CallError):
    """The SDP offer cannot be used (HTTP 400)."""


class DrainingError(CallError):
    """The worker is draining and takes no new calls (HTTP 503)."""


class AtCapacityError(CallError):
    """The worker is at its concurrent-call limit (HTTP 503)."""


# Half-open sessions (issue 18 item 6): an answered offer whose ICE + DTLS has not connected yet. They have
# their own budget (`max_half_open`, apart from `max_calls`), a short life (`connect_timeout_s`) and, when
# the budget is full, the oldest is ended to make room (as a SYN flood defence drops the oldest half-open
# connection): offers that never connect cannot hold the slots of calls, and a real caller, who connects in
# well under a second on loopback and a few on the internet, gets through a flood of them.
EVICTED = "half-open: superseded by newer offers"


class ConfigError(CallError):
    """A WebRTC setting the process cannot honour."""


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    ice_servers: tuple[RTCIceServer, ...] = ()  # no STUN/TURN unless configured
    udp_port_range: tuple[int, int] | None = None  # checked, not set: see check_udp_port_range
    loopback_only: bool = False  # host candidates 127.0.0.1 only, remote non-loopback candidates dropped
    max_calls: int = 32  # connected calls
    max_half_open: int = 16  # answered offers not connected yet (their own budget, oldest ended when full)
    connect_timeout_s: float = 5.0  # ICE + DTLS must connect by then (aioice alone takes much longer to fail)
    no_media_timeout_s: float = 20.0
    max_call_s: float = 3600.0
    tap_max_frames: int = 1500  # 30 s of 20 ms frames waiting for a stalled pipeline, then the call fails
    decode_in_aiortc: bool = False  # the pipeline decodes the payload itself; aiortc's decode is wasted
    teardown_timeout_s: float = 5.0  # for the decoder thread to stop and the track to end
    flush_timeout_s: float = 60.0  # for the pipeline to take the last frames after the peer closed
    linger_quiet_s: float = 0.4  # a call ending cleanly waits for media to stop arriving for this long ...
    linger_max_s: float = 3.0  # ... but never longer than this


# -- process-wide aioice settings ----------------------------------------------------------------------


def _loopback_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return [LOOPBACK] if use_ipv4 else []


def enable_loopback_only() -> None:
    """Gather only 127.0.0.1 host candidates, process-wide (aioice leaves loopback out by default)."""
    aioice.ice.get_host_addresses = _loopback_addresses


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """`enable_loopback_only` for the duration of a block (tests)."""
    saved = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_addresses
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = saved


def check_udp_port_range(
    low: int, high: int, *, sysctl: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")
) -> None:
    """aioice 0.13 binds host candidates to port 0 and has no port-range option, so the range a pod's
    firewall opens must be the kernel's ephemeral range: set the (network-namespaced, Kubernetes-"safe")
    sysctl `net.ipv4.ip_local_port_range` in the pod. This checks that it lies inside [low, high]."""
    if not 0 < low <= high <= 65535:
        raise ConfigError(f"bad UDP port range {low}-{high}")
    try:
        kernel_low, kernel_high = (int(x) for x in sysctl.read_text().split())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {sysctl}: {type(exc).__name__}") from None
    if kernel_low < low or kernel_high > high:
        raise ConfigError(
            f"UDP port range {low}-{high} needs net.ipv4.ip_local_port_range inside it "
            f"(it is {kernel_low}-{kernel_high}); aioice cannot bind a range itself"
        )


# -- offers ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferInfo:
    kinds: tuple[str, ...]  # m-line kinds in order
    audio_tracks: int


def _sends(media: Any) -> bool:
    return media.port != 0 and media.direction in (None, "sendrecv", "sendonly")


def _is_opus(codec: Any) -> bool:
    return bool(
        str(codec.mimeType).lower() == "audio/opus" and codec.clockRate == 48000 and codec.channels == 2
    )


_BARE_MID = re.compile(r"^a=mid:?[ \t]*\r?$", re.MULTILINE)


def parse_offer(text: str) -> OfferInfo:
    """Validate what a call needs from an offer before any state is created."""
    if not text.startswith("v=0"):
        raise OfferError("malformed SDP")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception:  # aiortc's parser raises ValueError, AssertionError, IndexError... on bad input
        raise OfferError("malformed SDP") from None
    mids = [m.rtp.muxId for m in description.media]
    # aiortc reads a bare "a=mid" as no mid at all, then fails to answer it: refuse it here.
    if any(mid == "" for mid in mids) or _BARE_MID.search(text):
        raise OfferError("malformed SDP: empty a=mid")
    named = [mid for mid in mids if mid]
    if len(set(named)) != len(named):
        raise OfferError("malformed SDP: duplicate a=mid")
    audio = [m for m in description.media if m.kind == "audio" and _sends(m)]
    if not audio:
        raise OfferError("offer has no audio")
    if not all(any(_is_opus(c) for c in m.rtp.codecs) for m in audio):
        raise OfferError("no supported audio codec (need opus/48000/2)")
    return OfferInfo(kinds=tuple(m.kind for m in description.media), audio_tracks=len(audio))


def keep_loopback_candidates(text: str) -> str:
    """Drop remote candidates that are not 127.0.0.1 (no mDNS lookups, no traffic off the host)."""
    lines = text.splitlines()
    kept = [ln for ln in lines if not ln.startswith("a=candidate:") or _candidate_host(ln) == LOOPBACK]
    return "\r\n".join(kept) + "\r\n"


def _candidate_host(line: str) -> str | None:
    parts = line.split()
    return parts[4] if len(parts) > 4 else None


_AUDIO_CAPABILITIES = RTCRtpReceiver.getCapabilities("audio")
_OPUS = [c for c in (_AUDIO_CAPABILITIES.codecs if _AUDIO_CAPABILITIES else []) if _is_opus(c)]


# -- one call ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    index: int
    track: Any  # aiortc RemoteStreamTrack
    tap: OpusTap
    pipeline: TrackPipeline | None = None
    e2ee: TrackUnprotector | None = None  # SFrame unprotect before the pipeline (E2EE calls)
    pushed: int = 0
    lost: int = 0


HANGUP = "client hung up"  # the reason a WHIP DELETE gives
DRAIN_CANCEL_WAIT_S = 1.0  # a call cancelled at the drain deadline gets this long to finish


@dataclass(slots=True)
class Call:
    call_id: str
    org_id: str
    session: CallSession
    pc: Any  # RTCPeerConnection
    tracks: list[_Track]
    config: WebRtcConfig
    clock: Callable[[], float]
    started: float
    last_media: float
    summary: CallSummary | None = None
    e2ee: E2eeState | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # Asked whether a connected slot is free when ICE + DTLS connects (the registry's `max_calls`).
    room: Callable[[Call], bool] = lambda _: True
    _end: asyncio.Future[tuple[str, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    _task: asyncio.Task[None] | None = None
    finish_by: float | None = None  # a drain's deadline (clock time): teardown waits are cut to it

    def _bounded(self, wait_s: float) -> float:
        """`wait_s`, cut so it is over by `finish_by`."""
        if self.finish_by is None:
            return wait_s
        return max(0.0, min(wait_s, self.finish_by - self.clock()))

    def end(self, status: str = "ended", reason: str | None = None) -> None:
        """Ask the call to end (the first reason wins); it tears down and finishes in its own task."""
        if not self._end.done():
            self._end.set_result((status, reason))

    @property
    def ending(self) -> bool:
        return self._end.done()

    async def wait_finished(self, wait_s: float | None = None) -> CallSummary | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), wait_s)
        return self.summary

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected.is_set():
            if self.room(self):
                self.connected.set()
            else:  # half-open offers connecting at once, with the connected slots filled meanwhile
                self.end("failed", "at capacity")
        elif state == "failed":
            self.end("failed", "ICE/DTLS connection failed")
        elif state == "closed":
            self.end("ended", "connection closed")

    async def run(self) -> None:
        bound = log.bind(call_id=self.call_id)
        try:
            status, reason = await self._serve()
        except asyncio.CancelledError:
            await self._finish("failed", "call cancelled")
            raise
        except Exception as exc:  # one call's failure must not take the worker down; finish it loudly
            bound.error("call_error", error=type(exc).__name__)
            await self._finish("failed", "internal error")
        else:
            await self._finish(status, reason)

    async def _serve(self) -> tuple[str, str | None]:
        async with asyncio.TaskGroup() as tg:
            drainers = [tg.create_task(self._drain(t), name=f"drain-{t.index}") for t in self.tracks]
            pumps = [tg.create_task(self._pump(t), name=f"pump-{t.index}") for t in self.tracks]
            watchdogs = [
                tg.create_task(self._watch_connect(), name="no-media-connect"),
                tg.create_task(self._watch_media(), name="no-media"),
            ]
            try:
                status, reason = await asyncio.wait_for(asyncio.shield(self._end), self.config.max_call_s)
            except TimeoutError:
                self.end("ended", f"maximum call length ({self.config.max_call_s:g} s)")
                status, reason = self._end.result()
            for task in watchdogs:
                task.cancel()
            if reason == HANGUP:
                await self._linger()
            # Closing the peer connection stops each receiver's decoder thread, which ends its track; the
            # drainer then closes the tap, which flushes aiortc's jitter buffer and ends the pump.
            await self.pc.close()
            # A call that never connected has no receiver to wait for: no frame can have arrived.
            teardown = self.config.teardown_timeout_s if self.connected.is_set() else 0.0
            _, stuck = await asyncio.wait(drainers, timeout=self._bounded(teardown))
            for task in stuck:  # a receiver that never started has no decoder thread to end its track
                task.cancel()
            _, stuck = await asyncio.wait(pumps, timeout=self._bounded(self.config.flush_timeout_s))
            for task in stuck:
                task.cancel()
        return status, reason

    async def _linger(self) -> None:
        """Before closing, let media already on its way (socket buffers, jitter buffer, a loaded event loop
        catching up) arrive: wait until no frame has come for `linger_quiet_s`, at most `linger_max_s`.
        Without it a DELETE right after the last packet loses whatever the loop had not read yet."""
        cfg = self.config
        deadline = self.clock() + cfg.linger_max_s
        while self.clock() < deadline and self.clock() - self.last_media < cfg.linger_quiet_s:  # noqa: ASYNC110
            await asyncio.sleep(cfg.linger_quiet_s / 3)

    async def _drain(self, t: _Track) -> None:
        try:
            while True:
                await t.track.recv()  # decoded frames (decode_in_aiortc) are dropped; the pipeline decodes
        except MediaStreamError:
            pass
        finally:
            t.tap.close()

    async def _pump(self, t: _Track) -> None:
        assert t.pipeline is not None
        timeline = RtpTimeline()
        while True:
            try:
                frame = await t.tap.get()
            except TapOverflowError:
                self.end("failed", f"track {t.index}: receive queue overflow")
                continue
            if frame is None:
                break
            self.last_media = now = self.clock()
            payload = frame.payload
            dropped: Dropped | None = None
            if t.e2ee is not None:
                opened = t.e2ee.open(payload, now)
                if isinstance(opened, Dropped):
                    dropped = opened
                else:
                    payload = opened.payload
            # A dropped frame still takes its place on the timeline (its length unknown: one frame), so
            # the gap check does not count it a second time.
            samples = FRAME_SAMPLES if dropped is not None else opus_packet_samples(payload)
            placed = timeline.feed(frame.rtp_timestamp, samples)
            if placed is None:  # not after the previous frame: cannot be stored in order
                self._lose(t, 1)
                continue
            if placed.lost:
                self._lose(t, placed.lost)
            if dropped is not None:
                self._lose(t, 1)
                if dropped.end_call is not None:
                    self.end("failed", dropped.end_call)
                continue
            await t.pipeline.push(EncodedFrame(payload=payload, timestamp=placed.timestamp))
            t.pushed += 1
        if t.tap.dropped:
            self._lose(t, t.tap.dropped)

    @staticmethod
    def _lose(t: _Track, frames: int) -> None:
        assert t.pipeline is not None
        t.lost += frames
        t.pipeline.count_lost(frames)

    async def _watch_connect(self) -> None:
        limit = self.config.connect_timeout_s
        try:
            await asyncio.wait_for(self.connected.wait(), limit)
        except TimeoutError:
            self.end("failed", f"ICE/DTLS not connected after {limit:g} s")

    async def _watch_media(self) -> None:
        timeout = self.config.no_media_timeout_s
        while True:
            idle = self.clock() - self.last_media
            if idle >= timeout:
                self.end("failed", f"no media for {timeout:g} s")
                return
            await asyncio.sleep(timeout - idle)

    async def _finish(self, status: str, reason: str | None) -> None:
        try:
            with contextlib.suppress(Exception):  # already closed, or closing failed: nothing left to save
                await self.pc.close()
            for t in self.tracks:
                t.tap.close()
            self.summary = await self.session.finish(status, reason)
            extra: dict[str, object] = {}
            if self.e2ee is not None:
                self.e2ee.forget_keys()
                extra["sframe_failures"] = [dict(t.e2ee.failures) if t.e2ee else {} for t in self.tracks]
            log.info(
                "call_finished",
                call_id=self.call_id,
                status=status,
                reason=reason,
                frames=[t.pushed for t in self.tracks],
                lost=[t.lost for t in self.tracks],
                **extra,
            )
        finally:
            self.finished.set()


# -- the registry ------------------------------------------------------------------------------------

BeforeAnswer = Callable[[CallSession], Awaitable[None]]


class Calls:
    """Active WebRTC calls of this process: admission, start, end, drain, close."""

    def __init__(
        self,
        engine: Engine,
        config: WebRtcConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or WebRtcConfig()
        self.clock = clock
        self._calls: dict[str, Call] = {}
        self._starting = 0
        self._draining = False
        self._changed = asyncio.Event()
        # Calls of another edge (worker.telephony.media_streams) that share `max_calls` and the drain: how
        # many are active, and how to end them all (at the drain deadline); the edge calls `other_call_ended`.
        self.other_calls: Callable[[], int] = lambda: 0
        self.end_other_calls: Callable[[str], None] = lambda reason: None
        self.registry = r = registry or CollectorRegistry()
        Gauge(
            "converse_half_open_calls", "Answered offers whose ICE + DTLS has not connected yet", registry=r
        ).set_function(lambda: self.half_open)
        Gauge("converse_connected_calls", "Calls whose ICE + DTLS connected", registry=r).set_function(
            lambda: self.connected
        )
        self._half_open_ended = Counter(
            "converse_half_open_ended",
            "Half-open sessions ended before connecting, by why (timeout, evicted, closed)",
            ["reason"],
            registry=r,
        )
        if self.config.udp_port_range is not None:
            check_udp_port_range(*self.config.udp_port_range)
        if self.config.loopback_only:
            enable_loopback_only()

    async def __aenter__(self) -> Calls:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def draining(self) -> bool:
        return self._draining

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    @property
    def connected(self) -> int:
        """Calls holding a connected slot (ICE + DTLS connected, until they have finished)."""
        return sum(1 for c in self._calls.values() if c.connected.is_set())

    def _half_open_calls(self) -> list[Call]:
        return [c for c in self._calls.values() if not c.connected.is_set() and not c.ending]

    @property
    def half_open(self) -> int:
        """Offers being answered or answered and not connected yet (ending ones leave within a moment)."""
        return self._starting + len(self._half_open_calls())

    def capacity(self) -> dict[str, int]:
        """For /readyz: connected and half-open sessions against their budgets."""
        cfg = self.config
        return {
            "connected_calls": self.connected,
            "max_calls": cfg.max_calls,
            "half_open_calls": self.half_open,
            "max_half_open": cfg.max_half_open,
        }

    def _room(self, call: Call) -> bool:
        busy = sum(1 for c in self._calls.values() if c.connected.is_set() and c is not call)
        return busy + self.other_calls() < self.config.max_calls

    def _admit(self) -> None:
        if self._draining:
            raise DrainingError("server is draining")
        cfg = self.config
        if self.connected + self.other_calls() >= cfg.max_calls:
            raise AtCapacityError(f"at capacity ({cfg.max_calls} calls)")
        if self.half_open >= cfg.max_half_open:
            waiting = self._half_open_calls()  # in admission order (dicts keep insertion order)
            if not waiting:  # every half-open slot is an offer still being answered
                raise AtCapacityError(f"at capacity ({cfg.max_half_open} offers connecting)")
            waiting[0].end("failed", EVICTED)

    async def start(
        self,
        offer_sdp: str,
        *,
        org_id: str,
        variables: Mapping[str, str] | None = None,
        before_answer: BeforeAnswer | None = None,
    ) -> tuple[Call, str]:
        """Admit a call, answer its offer (ICE gathering complete) and run it. Returns (call, answer SDP)."""
        self._admit()
        info = parse_offer(offer_sdp)
        self._starting += 1
        try:
            return await self._start(offer_sdp, info, org_id, variables, before_answer)
        finally:
            self._starting -= 1
            self._changed.set()

    async def _start(
        self,
        offer_sdp: str,
        info: OfferInfo,
        org_id: str,
        variables: Mapping[str, str] | None,
        before_answer: BeforeAnswer | None,
    ) -> tuple[Call, str]:
        if self.config.loopback_only:
            offer_sdp = keep_loopback_candidates(offer_sdp)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.config.ice_servers)))
        tracks: list[_Track] = []
        session: CallSession | None = None
        try:
            # One transceiver per m-line, in order, before the offer is applied: audio receives Opus only
            # (the answer offers no fallback codec), video is answered inactive (no decode, no CPU).
            for kind in info.kinds:
                if kind == "audio":
                    pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(_OPUS)
                elif kind == "video":
                    pc.addTransceiver("video", direction="inactive")
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            except Exception as exc:  # aiortc raises ValueError, OperationError, ... for offers it refuses
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise OfferError(f"malformed SDP: {detail}") from None
            loop = asyncio.get_running_loop()
            for tr in pc.getTransceivers():  # created in m-line order above
                if tr.kind == "audio" and tr.direction == "recvonly" and tr.receiver.track is not None:
                    # Taps attach before the local description starts ICE, so before any frame can arrive.
                    tap = OpusTap(
                        tr.receiver,
                        loop=loop,
                        max_frames=self.config.tap_max_frames,
                        decode=self.config.decode_in_aiortc,
                    )
                    tracks.append(_Track(index=len(tracks), track=tr.receiver.track, tap=tap))
            if not tracks:
                raise OfferError("offer has no audio")
            session = await self.engine.start_call(org_id=org_id, source="whip", variables=variables)
            for t in tracks:
                t.pipeline = await session.open_track()
            if before_answer is not None:
                await before_answer(session)
            e2ee = e2ee_of(session)
            if e2ee is None and requires_e2ee(session):
                raise E2eeRequiredError(REQUIRED_REASON)
            for t in tracks:
                t.e2ee = e2ee.track(t.index) if e2ee is not None else None
            try:
                await pc.setLocalDescription(await pc.createAnswer())  # aiortc gathers candidates first
            except Exception as exc:  # an offer aiortc accepted but cannot answer is still a bad offer
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise OfferError(f"malformed SDP: {detail}") from None
            if self._draining:
                raise DrainingError("server is draining")
            now = self.clock()
            call = Call(
                call_id=session.call_id,
                org_id=org_id,
                session=session,
                pc=pc,
                tracks=tracks,
                config=self.config,
                clock=self.clock,
                started=now,
                last_media=now,
                e2ee=e2ee,
            )
            call.room = self._room
            pc.on("connectionstatechange", call._on_connection_state)
            self._calls[call.call_id] = call
            call._task = asyncio.create_task(call.run(), name=f"call-{call.call_id}")
            call._task.add_done_callback(lambda _: self._forget(call.call_id))
            log.info("call_started", call_id=call.call_id, tracks=len(tracks))
            return call, pc.localDescription.sdp
        except BaseException as exc:
            for t in tracks:
                t.tap.close()
            state = e2ee_of(session) if session is not None else None
            if state is not None:
                state.forget_keys()
            await pc.close()
            if session is not None:
                reason = str(exc) if isinstance(exc, CallError | E2eeError) else "call setup failed"
                await session.finish("failed", reason)
            raise

    def _forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None and not call.connected.is_set():
            self._count_half_open_end(call)
        self._changed.set()

    def _count_half_open_end(self, call: Call) -> None:
        _, reason = call._end.result() if call._end.done() else ("failed", None)
        if reason == EVICTED:
            kind = "evicted"
        elif reason is not None and reason.startswith("ICE/DTLS not connected"):
            kind = "timeout"
        else:
            kind = "closed"  # hung up, failed or drained before connecting
        self._half_open_ended.labels(reason=kind).inc()
        log.info("half_open_ended", call_id=call.call_id, reason=kind)

    async def end(
        self, call_id: str, status: str = "ended", reason: str | None = None, *, wait_s: float | None = None
    ) -> CallSummary | None:
        """End a call (KeyError if unknown); wait up to `wait_s` for it to finish."""
        call = self._calls[call_id]
        call.end(status, reason)
        return await call.wait_finished(wait_s)

    def other_call_ended(self) -> None:
        """Another edge's call has finished: wakes a drain waiting for the calls to end."""
        self._changed.set()

    async def _wait_idle(self, wait_s: float | None) -> bool:
        deadline = None if wait_s is None else self.clock() + wait_s
        while self._calls or self._starting or self.other_calls():
            self._changed.clear()
            remaining = None if deadline is None else deadline - self.clock()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def drain(
        self, deadline_s: float, *, teardown_by: float | None = None, finish_by: float | None = None
    ) -> None:
        """Refuse new calls, let active ones run until `deadline_s`, then end them; return when all are
        finished. Each call's teardown is bounded by teardown_timeout_s + flush_timeout_s, and by
        `teardown_by` (clock time) when given; a call still running at `finish_by` is cancelled (it still
        closes its recordings, within the engine's own deadline, `Engine.set_deadline`)."""
        self._draining = True
        for call in list(self._calls.values()):  # calls ending on their own during the drain too
            call.finish_by = teardown_by
        if await self._wait_idle(deadline_s):
            return
        for call in list(self._calls.values()):
            call.finish_by = teardown_by
            call.end("ended", "server draining")
        self.end_other_calls("server draining")
        if finish_by is None:
            await self._wait_idle(None)
            return
        if not await self._wait_idle(max(0.0, finish_by - self.clock())):
            stuck = list(self._calls.values())
            log.warning("drain_cancelling_calls", calls=len(stuck))
            for call in stuck:
                if call._task is not None:
                    call._task.cancel()
            await self._wait_idle(DRAIN_CANCEL_WAIT_S)

    async def close(self) -> None:
        """End every call now (as a drain with no grace period)."""
        await self.drain(0)

    def tasks(self) -> Sequence[asyncio.Task[None]]:
        return [c._task for c in self._calls.values() if c._task is not None]

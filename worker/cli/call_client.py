"""`converse-worker call URL FIXTURE`: an aiortc WHIP client that sends a fixture to a running worker.

Each fixture track (48 kHz mono int16) becomes one send-only Opus track, paced in real time by frame pts.
After the fixture, every track sends `tail_s` of silence (so the last utterance finalises), then ends; the
client waits for the last packets to land, DELETEs the call and returns what it sent and the worker's
summary from the DELETE response.

End-to-end encryption (issue 9): with a `FrameProtector`, every outgoing Opus payload is SFrame-protected
(RFC 9605) through the send seam in `media.opus_send_tap`, and the WHIP POST carries
`Converse-SFrame-Suite` / `Converse-SFrame-Keys`. Nothing is ever sent in the clear: a payload that cannot
be protected stops the track.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import math
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.fixtures import iter_frames
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.opus import OpusEncoder
from media.opus_send_tap import SendTap
from media.sframe_session import MemoryCounterStore, SFrameSender, key_fingerprint
from worker.webrtc.peer import loopback_only as _loopback_only
from worker.webrtc.whip import SFRAME_KEYS_HEADER, SFRAME_SUITE_HEADER

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class WhipClientError(Exception):
    """The call could not be made; the message is one line."""


class FixtureTrack(MediaStreamTrack):
    """One fixture track as 20 ms `av.AudioFrame`s (s16 mono 48 kHz), paced by pts when `realtime`.

    With `packets` (one Opus packet per frame, from `encode_track`) it hands aiortc those as `av.Packet`s
    instead, which aiortc sends as they are: a benchmark's many client calls then cost no encoding while
    they run (aiortc encodes each frame on its executor otherwise). Pre-encoded packets may last any Opus
    frame duration (`packet_samples`, 2.5 to 120 ms, as SIP gateways and `ptime` clients send): their pts,
    hence their RTP timestamps, and the pacing follow it."""

    kind = "audio"

    def __init__(
        self,
        samples: npt.NDArray[np.int16],
        total_frames: int,
        *,
        realtime: bool = True,
        packets: Sequence[bytes] | None = None,
        packet_samples: int = FRAME_SAMPLES,
    ) -> None:
        super().__init__()
        if packet_samples != FRAME_SAMPLES and packets is None:
            raise WhipClientError("only pre-encoded packets can be longer or shorter than 20 ms")
        self._samples = np.ascontiguousarray(samples, dtype=np.int16).reshape(-1)
        self._total = total_frames
        self._realtime = realtime
        if packets is not None and len(packets) < total_frames:
            raise WhipClientError(f"{len(packets)} Opus packets for a track of {total_frames} frames")
        self._packets = packets
        self._packet_samples = packet_samples
        self._start: float | None = None
        self.frames_sent = 0
        self.done = asyncio.Event()

    def stop(self) -> None:
        """Also when aiortc's sender stops the track (its RTP task failed, e.g. a payload it could not
        protect): the call then ends instead of waiting for frames that will never be sent."""
        super().stop()
        self.done.set()

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        if self.readyState != "live" or self.frames_sent >= self._total:
            self.done.set()
            self.stop()
            raise MediaStreamError
        index = self.frames_sent
        loop = asyncio.get_running_loop()
        if self._realtime:
            if self._start is None:
                self._start = loop.time()
            wait = self._start + index * self._packet_samples / SAMPLE_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        else:
            await asyncio.sleep(0)
        if self._packets is not None:
            packet = av.Packet(self._packets[index])
            packet.pts = index * self._packet_samples
            packet.time_base = TIME_BASE
            self.frames_sent += 1
            return packet
        chunk = self._samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * FRAME_SAMPLES
        frame.time_base = TIME_BASE
        self.frames_sent += 1
        return frame


def track_frames(samples: int, tail_s: float, packet_samples: int = FRAME_SAMPLES) -> int:
    """Frames (20 ms, or `packet_samples` each) a call sends for a track of `samples` (48 kHz): the
    audio, then `tail_s` of silence."""
    n = packet_samples
    return math.ceil(samples / n) + math.ceil(tail_s * SAMPLE_RATE / n)


def encode_track(
    samples: npt.NDArray[np.int16], frames: int, packet_samples: int = FRAME_SAMPLES
) -> list[bytes]:
    """The Opus packets `FixtureTrack` would have aiortc encode for `frames` frames of `samples` (or, for
    another `packet_samples`, what a sender with that frame duration emits)."""
    pcm = np.zeros(frames * packet_samples, dtype=np.int16)
    flat = np.asarray(samples, dtype=np.int16).reshape(-1)[: len(pcm)]
    pcm[: len(flat)] = flat
    encoder = OpusEncoder(frame_samples=packet_samples)
    if packet_samples == FRAME_SAMPLES:
        return [encoder.encode(frame) for frame in iter_frames(pcm)]
    step = packet_samples
    return [encoder.encode(pcm[i : i + step].tobytes()) for i in range(0, len(pcm), step)]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FrameProtector:
    """SFrame sender for a call's outgoing Opus payloads (thread-safe: aiortc encodes in its executor).

    Every track of the call shares one sender per KID, so no (key, KID, CTR) repeats across tracks. The CTR
    of each KID starts at a random 40-bit value: a key reused across client runs (the same `--sframe-key`)
    then does not reuse a nonce in practice. `rotate(kid, key)` switches to a new KID mid-call; announce it
    beforehand (`announce` keys go into the WHIP header, or add it through the admin API). Keys are never
    in repr."""

    def __init__(
        self, suite: int, key: bytes, kid: int, *, announce: Mapping[int, bytes] | None = None
    ) -> None:
        self.suite = suite
        self._keys: dict[int, bytes] = {kid: key, **(announce or {})}
        self._lock = threading.Lock()
        self._sender = self._new_sender(kid, key)
        self.protected = 0

    def __repr__(self) -> str:
        return f"FrameProtector(suite={self.suite}, kid={self.kid}, protected={self.protected})"

    def _new_sender(self, kid: int, key: bytes) -> SFrameSender:
        start = MemoryCounterStore({(key_fingerprint(self.suite, key), kid): secrets.randbits(40)})
        return SFrameSender(self.suite, key, kid, counter_store=start)

    @property
    def kid(self) -> int:
        return self._sender.kid

    def rotate(self, kid: int, key: bytes) -> None:
        sender = self._new_sender(kid, key)
        with self._lock:
            self._keys.setdefault(kid, key)
            self._sender = sender

    def __call__(self, payload: bytes) -> bytes:
        with self._lock:
            sender = self._sender
            self.protected += 1
        return sender.protect(payload)

    def headers(self) -> dict[str, str]:
        """The WHIP headers announcing the suite and every key known so far."""
        keys = ", ".join(f"{kid}={b64url(key)}" for kid, key in self._keys.items())
        return {SFRAME_SUITE_HEADER: str(self.suite), SFRAME_KEYS_HEADER: keys}


def whip_endpoint(url: str) -> str:
    """Accept the worker's base URL or its WHIP endpoint."""
    return urljoin(url, "/whip") if urlsplit(url).path in ("", "/") else url


async def _wait_state(pc: Any, wanted: str, wait_s: float) -> None:
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    deadline = time.monotonic() + wait_s
    while pc.connectionState != wanted:
        if pc.connectionState in ("failed", "closed"):
            raise WhipClientError(f"connection {pc.connectionState}")
        changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WhipClientError(f"not {wanted} after {wait_s:g} s (state {pc.connectionState})")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


async def _packets_sent(sender: Any) -> int:
    stats = await sender.getStats()
    return sum(int(s.packetsSent) for s in stats.values() if getattr(s, "type", "") == "outbound-rtp")


async def run_call(
    url: str,
    fixture_tracks: Sequence[npt.NDArray[np.int16]],
    token: str,
    realtime: bool = True,
    *,
    tail_s: float = 1.5,
    settle_s: float = 0.5,
    connect_timeout_s: float = 15.0,
    loopback_only: bool = False,
    headers: Mapping[str, str] | None = None,
    sframe: FrameProtector | None = None,
    packets: Sequence[Sequence[bytes]] | None = None,
    packet_samples: int = FRAME_SAMPLES,
) -> dict[str, Any]:
    """Call the worker at `url` with the fixture; return {"call_id", "location", "frames_sent" per track,
    "packets_sent" per track, "duration_s", "server": the DELETE response (the call's summary)}.

    `packets`: each track already Opus-encoded (`encode_track(track, track_frames(longest, tail_s, n), n)`
    with `packet_samples=n`, 20 ms by default)."""
    if not fixture_tracks:
        raise WhipClientError("fixture has no tracks")
    if packets is not None and len(packets) != len(fixture_tracks):
        raise WhipClientError(f"packets for {len(packets)} tracks, fixture has {len(fixture_tracks)}")
    context = _loopback_only() if loopback_only else contextlib.nullcontext()
    with context:
        return await _run_call(
            whip_endpoint(url),
            fixture_tracks,
            token,
            realtime,
            tail_s,
            settle_s,
            connect_timeout_s,
            headers,
            sframe,
            packets,
            packet_samples,
        )


async def _run_call(
    endpoint: str,
    fixture_tracks: Sequence[npt.NDArray[np.int16]],
    token: str,
    realtime: bool,
    tail_s: float,
    settle_s: float,
    connect_timeout_s: float,
    headers: Mapping[str, str] | None,
    sframe: FrameProtector | None,
    packets: Sequence[Sequence[bytes]] | None,
    packet_samples: int,
) -> dict[str, Any]:
    total = track_frames(max(len(t) for t in fixture_tracks), tail_s, packet_samples)
    tracks = [
        FixtureTrack(
            t,
            total,
            realtime=realtime,
            packets=packets[i] if packets is not None else None,
            packet_samples=packet_samples,
        )
        for i, t in enumerate(fixture_tracks)
    ]
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    auth = {"Authorization": f"Bearer {token}"}
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    location: str | None = None
    taps: list[SendTap] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        try:
            senders = []
            for track in tracks:
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(opus)
                senders.append(transceiver.sender)
                if sframe is not None:  # attached before the sender starts: its first frame is protected
                    taps.append(SendTap(transceiver.sender, sframe))
            await pc.setLocalDescription(await pc.createOffer())
            e2ee = sframe.headers() if sframe is not None else {}
            # Explicit `headers` win over the protector's (tests announce other keys than the ones used).
            post_headers = {**e2ee, **(headers or {}), **auth, "Content-Type": "application/sdp"}
            async with http.post(endpoint, data=pc.localDescription.sdp, headers=post_headers) as resp:
                text = await resp.text()
                if resp.status != 201:
                    line = text.strip().splitlines()[0] if text.strip() else resp.reason
                    raise WhipClientError(f"WHIP POST {resp.status}: {line}")
                location = urljoin(endpoint, resp.headers["Location"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
            await _wait_state(pc, "connected", connect_timeout_s)
            ended: asyncio.Future[Any] = asyncio.gather(*(t.done.wait() for t in tracks))
            failed: asyncio.Future[Any] = asyncio.ensure_future(_wait_state(pc, "failed", math.inf))
            try:
                await asyncio.wait([ended, failed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                failed.cancel()
                with contextlib.suppress(asyncio.CancelledError, WhipClientError):
                    await failed
            if not ended.done():
                ended.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ended
                raise WhipClientError(f"connection {pc.connectionState} during the call")
            await asyncio.sleep(settle_s)  # the last packets are on their way
            sent = [await _packets_sent(s) for s in senders]
            server = await _delete(http, location, auth)
            location_done, location = location, None
        finally:
            await pc.close()
            for tap in taps:
                tap.close()
            if location is not None:  # failed mid-call: do not leave the call running on the worker
                with contextlib.suppress(aiohttp.ClientError, WhipClientError):
                    await _delete(http, location, auth)
    return {
        "call_id": location_done.rstrip("/").rsplit("/", 1)[-1],
        "location": location_done,
        "tracks": len(tracks),
        "frames_sent": [t.frames_sent for t in tracks],
        "packets_sent": sent,
        "duration_s": round(time.monotonic() - started, 3),
        "server": server,
    }


async def _delete(http: aiohttp.ClientSession, location: str, auth: Mapping[str, str]) -> Any:
    async with http.delete(location, headers=auth) as resp:
        text = await resp.text()
        if resp.status != 200:
            line = text.strip().splitlines()[0] if text.strip() else resp.reason
            raise WhipClientError(f"WHIP DELETE {resp.status}: {line}")
        try:
            return json.loads(text)
        except ValueError:
            return None

"""The encoded-frame seam into aiortc: received Opus payloads with their RTP timestamps, before any decode.

aiortc (pinned: 1.16.0) has no public hook for encoded frames. Its per-receiver decoder thread
(`aiortc.rtcrtpreceiver.decoder_worker`) calls the module-level `get_decoder(codec)` on the first frame of a
codec, then `decoder.decode(jitter_frame)` for every frame leaving the jitter buffer, in order. This module is
the ONLY place that touches that private seam (and the receiver's private jitter buffer, see `OpusTap.close`):

- `install()` replaces `aiortc.rtcrtpreceiver.get_decoder` once, process-wide. For a receiver without a tap,
  or a codec other than Opus, the replacement returns aiortc's own decoder: nothing changes.
- `OpusTap(receiver, loop=...)` registers a tap for one `RTCRtpReceiver`. On its first Opus frame the decoder
  thread finds the tap whose receiver owns the current thread (`receiver.__decoder_thread`), so the mapping
  needs no track ids and no timing assumption beyond "attached before the first frame" (attach right after
  `setRemoteDescription`; frames only flow after ICE and DTLS connect).
- The tapped decoder hands `(payload, timestamp)` to the event loop with `loop.call_soon_threadsafe` into a
  bounded deque. By default it does NOT decode (`decode=False`): the pipeline decodes Opus off the loop from
  the payload it seals anyway, so aiortc's decode, the per-frame `run_coroutine_threadsafe` hand-off of PCM
  and the `recv()` wake-ups are wasted CPU. The track must still be read with `recv()` from the start: with
  no decoded frames its queue only ever holds aiortc's end-of-track `None`, and reading it tells us the
  decoder thread has stopped.
- aiortc's audio jitter buffer holds back 4 frames (prefetch) that never reach the decoder when the call
  ends. `close()` takes those held frames out of the stopped receiver's jitter buffer, so every frame the
  receiver accepted is delivered (in order, after the decoded ones) or shows up as a timestamp gap.

`RtpTimeline` (sans-IO) turns the 32-bit RTP timestamps into track-relative 48 kHz sample counts and counts
the frames missing in gaps; `opus_packet_samples` reads a packet's duration from its TOC byte (RFC 6716 3.1).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, NamedTuple

import aiortc.rtcrtpreceiver as _rtcrtpreceiver

from media.frames import FRAME_SAMPLES

RTP_TS_MASK = 0xFFFF_FFFF
_HALF = 1 << 31
OPUS_MIME = "audio/opus"

SEAM = "get_decoder"  # looked up by aiortc.rtcrtpreceiver.decoder_worker as a module global, per codec
# aiortc name-mangled private attributes this module reads (pinned by tests/test_opus_tap.py).
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"


class TapError(Exception):
    """Base of this module's errors."""


class TapOverflowError(TapError):
    """The consumer fell behind by more than the tap's bound; the call must fail loudly (nothing is dropped
    silently: the dropped count is on the tap)."""


class TappedFrame(NamedTuple):
    payload: bytes
    rtp_timestamp: int  # 32 bits; only differences are meaningful


class _TapDecoder:
    """What the decoder thread gets for a tapped Opus receiver."""

    __slots__ = ("_inner", "_tap")

    def __init__(self, tap: OpusTap, inner: Any | None) -> None:
        self._tap = tap
        self._inner = inner

    def decode(self, encoded_frame: Any) -> list[Any]:
        self._tap._offer_threadsafe(bytes(encoded_frame.data), int(encoded_frame.timestamp) & RTP_TS_MASK)
        if self._inner is None:
            return []
        result: list[Any] = self._inner.decode(encoded_frame)
        return result


_lock = threading.Lock()
_taps: dict[int, OpusTap] = {}  # id(receiver) -> tap, while attached
_original_get_decoder: Any = None


def install() -> None:
    """Wrap `aiortc.rtcrtpreceiver.get_decoder` (idempotent; safe for receivers without a tap)."""
    global _original_get_decoder
    with _lock:
        if _original_get_decoder is None:
            _original_get_decoder = getattr(_rtcrtpreceiver, SEAM)
            setattr(_rtcrtpreceiver, SEAM, _tapped_get_decoder)


def _tapped_get_decoder(codec: Any) -> Any:
    original = _original_get_decoder
    if str(codec.mimeType).lower() != OPUS_MIME:
        return original(codec)
    current = threading.current_thread()
    with _lock:
        tap = next((t for t in _taps.values() if getattr(t.receiver, _DECODER_THREAD, None) is current), None)
    if tap is None:
        return original(codec)
    return _TapDecoder(tap, original(codec) if tap.decode else None)


class OpusTap:
    """Encoded Opus frames of one receiver, in order, handed from aiortc's decoder thread to the loop.

    Bounded: more than `max_frames` undelivered frames means the consumer stalled. That is terminal: the
    queued and all later frames are counted in `dropped`, `get()` raises `TapOverflowError` once and then
    returns None when the tap ends (sealed audio never drops silently; the call fails loudly).
    """

    def __init__(
        self,
        receiver: Any,
        *,
        loop: asyncio.AbstractEventLoop,
        max_frames: int = 1500,
        decode: bool = False,
    ) -> None:
        install()
        self.receiver = receiver
        self.decode = decode
        self.max_frames = max_frames
        self.delivered = 0
        self.dropped = 0
        self.flushed = 0  # frames taken from the jitter buffer at close
        self._loop = loop
        self._frames: deque[TappedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._overflow_reported = False
        self._closing = False
        self._ended = False
        with _lock:
            _taps[id(receiver)] = self

    # -- decoder thread side -------------------------------------------------------------------------
    def _offer_threadsafe(self, payload: bytes, rtp_timestamp: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._put, TappedFrame(payload, rtp_timestamp))
        except RuntimeError:  # the loop is closed: the call is gone, nobody can take the frame
            self.dropped += 1

    # -- loop side -----------------------------------------------------------------------------------
    def _put(self, frame: TappedFrame) -> None:
        if self._ended or self._overflowed:
            self.dropped += 1
            return
        if len(self._frames) >= self.max_frames:
            # Terminal: what is queued cannot be stored in order any more; count it all as dropped.
            self._overflowed = True
            self.dropped += len(self._frames) + 1
            self._frames.clear()
        else:
            self._frames.append(frame)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> TappedFrame | None:
        """The next frame, or None once the tap is closed and empty."""
        while True:
            if self._overflowed and not self._overflow_reported:
                self._overflow_reported = True
                raise TapOverflowError(f"tap overflow: {self.max_frames} frames undelivered")
            if self._frames:
                self.delivered += 1
                return self._frames.popleft()
            if self._ended:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """End the tap (idempotent). Frames the decoder thread already handed over are delivered first; if
        the receiver's decoder thread has stopped, the frames aiortc's jitter buffer still holds follow."""
        if self._closing:
            return
        self._closing = True
        with _lock:
            _taps.pop(id(self.receiver), None)
        # call_soon is FIFO with call_soon_threadsafe: frames the thread handed over before it stopped are
        # already queued on the loop and land before the flushed ones.
        self._loop.call_soon(self._flush_and_end)

    def _flush_and_end(self) -> None:
        if getattr(self.receiver, _DECODER_THREAD, None) is None:
            for frame in held_frames(self.receiver):
                self.flushed += 1
                self._put(frame)
        self._ended = True
        self._wake()

    def __aiter__(self) -> OpusTap:
        return self

    async def __anext__(self) -> TappedFrame:
        frame = await self.get()
        if frame is None:
            raise StopAsyncIteration
        return frame


def held_frames(receiver: Any) -> list[TappedFrame]:
    """Complete frames left in a stopped receiver's jitter buffer, in sequence order, timestamps mapped the
    way aiortc maps the frames it hands to the decoder. Packets of one frame share a timestamp."""
    jitter = getattr(receiver, _JITTER_BUFFER)
    mapper = getattr(receiver, _TIMESTAMP_MAPPER)
    if jitter._origin is None:
        return []
    frames: list[TappedFrame] = []
    parts: list[bytes] = []
    timestamp: int | None = None
    for count in range(jitter.capacity):
        packet = jitter._packets[(jitter._origin + count) % jitter.capacity]
        if packet is None:
            continue
        if timestamp is not None and packet.timestamp != timestamp:
            frames.append(TappedFrame(b"".join(parts), mapper.map(timestamp) & RTP_TS_MASK))
            parts = []
        timestamp = packet.timestamp
        parts.append(packet._data)
    if timestamp is not None:
        frames.append(TappedFrame(b"".join(parts), mapper.map(timestamp) & RTP_TS_MASK))
    return frames


# Frame durations in 48 kHz samples by TOC config (RFC 6716 section 3.1, Table 2).
_SILK = (480, 960, 1920, 2880)
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)


def opus_packet_samples(payload: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte; FRAME_SAMPLES if it cannot tell."""
    if not payload:
        return FRAME_SAMPLES
    toc = payload[0]
    config = toc >> 3
    if config < 12:
        per_frame = _SILK[config % 4]
    elif config < 16:
        per_frame = _HYBRID[config % 2]
    else:
        per_frame = _CELT[config % 4]
    code = toc & 0x3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(payload) >= 2:
        frames = payload[1] & 0x3F  # code 3: frame count in the low 6 bits of the second byte
    else:
        return FRAME_SAMPLES
    samples = per_frame * frames
    return samples if 0 < samples <= 5760 else FRAME_SAMPLES  # at most 120 ms per packet


class Placed(NamedTuple):
    timestamp: int  # 48 kHz samples from the first frame of the track
    lost: int  # frames missing right before this one


class RtpTimeline:
    """Sans-IO: place 32-bit RTP timestamps on a track timeline and count frames missing in gaps.

    Wrap-around is handled with serial-number arithmetic (a step of less than 2**31 forward is forward).
    A frame that does not move forward (duplicate or late) is refused: `feed` returns None.
    """

    __slots__ = ("_ext", "_first", "_next")

    def __init__(self) -> None:
        self._first: int | None = None
        self._ext = 0  # extended (unwrapped) timestamp of the last accepted frame
        self._next = 0  # where the next frame should start, relative to the first

    def feed(self, rtp_timestamp: int, samples: int = FRAME_SAMPLES) -> Placed | None:
        ts = rtp_timestamp & RTP_TS_MASK
        if self._first is None:
            self._first = self._ext = ts
            self._next = samples
            return Placed(0, 0)
        step = ((ts - (self._ext & RTP_TS_MASK) + _HALF) & RTP_TS_MASK) - _HALF
        if step <= 0:
            return None
        ext = self._ext + step
        relative = ext - self._first
        gap = relative - self._next
        lost = (gap + FRAME_SAMPLES // 2) // FRAME_SAMPLES if gap > 0 else 0
        self._ext = ext
        self._next = relative + samples
        return Placed(relative, lost)

"""The encoded-frame seam into aiortc: received Opus payloads with their RTP timestamps, before any decode.

aiortc (pinned: 1.16.0) has no public hook for encoded frames. `RTCRtpReceiver._handle_rtp_packet` runs on
the event loop; each frame leaving the receiver's jitter buffer is put on the receiver's private
`queue.Queue` (`__decoder_queue`) as `(codec, encoded_frame)`, and a per-receiver decoder thread
(`decoder_worker`) takes it from there to decode it. This module is the ONLY place that touches that private
seam (and the receiver's private jitter buffer, see `OpusTap.close`):

- `OpusTap(receiver, loop=...)` replaces the receiver's decoder queue with a `_TapQueue`. Its `put`, called
  on the loop, hands an Opus frame's `(payload, timestamp)` straight to the tap's bounded deque: no thread
  hop. By default (`decode=False`) the frame stops there: the pipeline decodes Opus off the loop from the
  payload it seals anyway, so aiortc's decode, its per-frame hand-offs between threads (a `queue.Queue`
  put that wakes the decoder thread, a `run_coroutine_threadsafe` back with PCM) and the `recv()` wake-ups
  are wasted CPU: the wake-up alone was a quarter of the loop thread's time (py-spy, 8 calls). Other codecs,
  and Opus with `decode=True`, go on to aiortc's queue as before. `get` is the real queue's, so the decoder
  thread, whenever it starts, waits there: idle until aiortc's end-of-track `None`, which `put` forwards.
- The track must still be read with `recv()` from the start: with no decoded frames its queue only ever
  holds aiortc's end-of-track `None`, and reading it tells us the receiver has stopped.
- aiortc's audio jitter buffer holds back 4 frames (prefetch) that never leave it when the call ends.
  `close()` takes those held frames out of the stopped receiver's jitter buffer, so every frame the
  receiver accepted is delivered (in order, after the others) or shows up as a timestamp gap.

`RtpTimeline` (sans-IO) turns the 32-bit RTP timestamps into track-relative 48 kHz sample counts and counts
the frames missing in gaps; `opus_packet_samples` reads a packet's duration from its TOC byte (RFC 6716 3.1).
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from typing import Any, NamedTuple

from media.frames import FRAME_SAMPLES

RTP_TS_MASK = 0xFFFF_FFFF
_HALF = 1 << 31
OPUS_MIME = "audio/opus"

# aiortc name-mangled private attributes this module reads or replaces (pinned by tests/test_opus_tap.py).
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
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


class _TapQueue:
    """Stands in for a receiver's decoder queue. `put` runs on the event loop (aiortc's RTP handler); `get`
    runs on the decoder thread and is the real queue's."""

    __slots__ = ("_inner", "_tap", "get")

    def __init__(self, tap: OpusTap, inner: queue.Queue[Any]) -> None:
        self._tap = tap
        self._inner = inner
        self.get = inner.get

    def put(self, item: Any) -> None:
        if item is not None:
            codec, encoded_frame = item
            if codec.mimeType.lower() == OPUS_MIME:
                tap = self._tap
                tap._put(TappedFrame(bytes(encoded_frame.data), int(encoded_frame.timestamp) & RTP_TS_MASK))
                if not tap.decode:
                    return
        self._inner.put(item)


class OpusTap:
    """Encoded Opus frames of one receiver, in order, as aiortc's jitter buffer releases them (on the loop).

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
        # Attach before the first frame (right after setRemoteDescription): frames flow after ICE and DTLS.
        inner = getattr(receiver, _DECODER_QUEUE, None)
        if not isinstance(inner, queue.Queue):
            inner = queue.Queue()
        setattr(receiver, _DECODER_QUEUE, _TapQueue(self, inner))

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
        # Later, not now: a frame aiortc is handing over in this loop iteration still lands before the flush.
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

    __slots__ = ("_ext", "_first", "_next", "_samples")

    def __init__(self) -> None:
        self._first: int | None = None
        self._ext = 0  # extended (unwrapped) timestamp of the last accepted frame
        self._next = 0  # where the next frame should start, relative to the first
        self._samples = FRAME_SAMPLES  # duration of the last accepted frame: the unit of `lost`

    def feed(self, rtp_timestamp: int, samples: int = FRAME_SAMPLES) -> Placed | None:
        ts = rtp_timestamp & RTP_TS_MASK
        if self._first is None:
            self._first = self._ext = ts
            self._next = self._samples = samples
            return Placed(0, 0)
        step = ((ts - (self._ext & RTP_TS_MASK) + _HALF) & RTP_TS_MASK) - _HALF
        if step <= 0:
            return None
        ext = self._ext + step
        relative = ext - self._first
        gap = relative - self._next
        # Packets missing, in packets as long as the one before the gap (a lost 60 ms packet is one frame).
        unit = self._samples
        lost = (gap + unit // 2) // unit if gap > 0 else 0
        self._ext = ext
        self._next = relative + samples
        self._samples = samples
        return Placed(relative, lost)

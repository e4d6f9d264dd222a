"""The encoded-frame seam on aiortc's SEND side: transform each outgoing Opus packet before it is packetised.

The sender-side twin of `media.opus_tap`, and the ONLY module that touches this private seam. aiortc (pinned:
1.16.0) has no public encoded-transform API. `RTCRtpSender._next_encoded_frame` (run by the sender's RTP task,
`RTCRtpSender.__rtp_task`) calls the module-level `get_encoder(codec)` once, on its first frame, keeps the
encoder in `RTCRtpSender.__encoder`, and then, per frame, `encoder.encode(frame, force_keyframe)` (in the
default executor) or `encoder.pack(packet)` for pre-encoded input; both return `(payloads, timestamp)` and
every payload is sent as the RTP payload of one packet.

- `install()` replaces `aiortc.rtcrtpsender.get_encoder` once, process-wide. For a sender without a tap, or
  a codec other than Opus, the replacement returns aiortc's own encoder: nothing changes.
- `SendTap(sender, transform)` registers a transform (`bytes -> bytes`, e.g. an SFrame protector) for one
  `RTCRtpSender`; attach it before the sender starts (before `setRemoteDescription` of the answer). The
  seam finds the tap whose sender's RTP task is the current task, so no track ids are involved.
- Fail closed: if `transform` raises, the exception leaves `encode`, aiortc's RTP task logs it and stops the
  track. A payload is never sent untransformed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiortc.rtcrtpsender as _rtcrtpsender

OPUS_MIME = "audio/opus"
SEAM = "get_encoder"  # looked up by aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame as a module global
_RTP_TASK = "_RTCRtpSender__rtp_task"  # name-mangled; pinned by tests/test_e2ee.py

Transform = Callable[[bytes], bytes]


class _TransformingEncoder:
    """What the sender's RTP task gets for a tapped Opus sender: aiortc's encoder, payloads transformed."""

    __slots__ = ("_inner", "_tap")

    def __init__(self, tap: SendTap, inner: Any) -> None:
        self._tap = tap
        self._inner = inner

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], Any]:
        payloads, timestamp = self._inner.encode(frame, force_keyframe)
        return self._tap.apply(payloads), timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], Any]:
        payloads, timestamp = self._inner.pack(packet)
        return self._tap.apply(payloads), timestamp


_lock = threading.Lock()
_taps: dict[int, SendTap] = {}  # id(sender) -> tap, while attached
_original_get_encoder: Any = None


def install() -> None:
    """Wrap `aiortc.rtcrtpsender.get_encoder` (idempotent; safe for senders without a tap)."""
    global _original_get_encoder
    with _lock:
        if _original_get_encoder is None:
            _original_get_encoder = getattr(_rtcrtpsender, SEAM)
            setattr(_rtcrtpsender, SEAM, _tapped_get_encoder)


def _tapped_get_encoder(codec: Any) -> Any:
    original = _original_get_encoder
    if str(codec.mimeType).lower() != OPUS_MIME:
        return original(codec)
    try:
        current = asyncio.current_task()
    except RuntimeError:  # not on an event loop: not a sender's RTP task
        current = None
    with _lock:
        tap = next((t for t in _taps.values() if getattr(t.sender, _RTP_TASK, None) is current), None)
    if tap is None or current is None:
        return original(codec)
    return _TransformingEncoder(tap, original(codec))


class SendTap:
    """Transforms every Opus payload one `RTCRtpSender` sends. `transformed` counts payloads."""

    def __init__(self, sender: Any, transform: Transform) -> None:
        install()
        self.sender = sender
        self.transform = transform
        self.transformed = 0
        with _lock:
            _taps[id(sender)] = self

    def apply(self, payloads: list[bytes]) -> list[bytes]:
        out = [self.transform(bytes(p)) for p in payloads]
        self.transformed += len(out)
        return out

    def close(self) -> None:
        """Detach (idempotent). An encoder already handed out keeps transforming: it never sends clear."""
        with _lock:
            if _taps.get(id(self.sender)) is self:
                del _taps[id(self.sender)]

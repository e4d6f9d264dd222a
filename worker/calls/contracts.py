"""What the call edges (replay, WebRTC) see of the pipeline. Implemented by `worker.calls.engine`.

A `CallSession` owns one TaskGroup; each `TrackPipeline` seals every frame it is given (never drops: `push`
applies backpressure) and feeds speech to ASR. Live events go to subscribers of the call's live view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from media.frames import EncodedFrame


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A live-view event: `kind` is "partial" or "final" (unredacted text, memory only) or "ended"."""

    call_id: str
    track: int
    kind: str
    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class FinalResult:
    """A committed final utterance as reported to replay/call output (text is redacted)."""

    call_id: str
    track: int
    start: float
    end: float
    speech_end: float
    text: str
    committed_at: str
    committed_monotonic: float
    time_to_final: float | None = None  # commit time minus arrival time of the end of speech, seconds
    held: bool = False  # held back to be redacted joined to the next final (redact.hold)


@dataclass(frozen=True, slots=True)
class CallSummary:
    call_id: str
    status: str
    reason: str | None
    tracks: int
    frames_received: int
    frames_sealed: int
    frames_lost: int
    utterances: int
    failed_utterances: int
    duration_s: float


class TrackPipeline(Protocol):
    index: int

    async def push(self, frame: EncodedFrame) -> None:
        """Seal and store the frame (in order) and feed its audio to the speech branch."""

    def count_lost(self, frames: int) -> None:
        """Frames the edge knows it lost (RTP gaps, undecodable payloads)."""


class CallSession(Protocol):
    call_id: str

    async def open_track(self) -> TrackPipeline:
        """Add the next track (numbered 0, 1, ... in order of opening)."""

    async def finish(self, status: str = "ended", reason: str | None = None) -> CallSummary:
        """Flush every track (speech in progress is finalised), seal, store, end the call."""

    def live(self) -> AsyncIterator[LiveEvent]:
        """Subscribe to this call's live events (bounded; a slow subscriber loses partials, not finals)."""


class Engine(Protocol):
    async def start_call(
        self,
        *,
        org_id: str,
        source: str,
        fixture: str | None = None,
        variables: Mapping[str, str] | None = None,
        call_id: str | None = None,
    ) -> CallSession: ...

    def get_call(self, call_id: str) -> CallSession | None: ...

"""The narrow protocols the worker talks to, and the records that cross them.

Backends: `storage.local` (SQLite + files, the embedded default), `storage.scale` (PostgreSQL + S3),
`storage.memory` (in-memory fakes for unit tests). All methods are async; blocking backends run their I/O
in a thread so the event loop never waits on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key sealed by a key-encryption key (KEK). `blob` is AES-GCM(nonce || ciphertext || tag)."""

    kek_id: str
    kek_version: int
    blob: bytes


@dataclass(frozen=True, slots=True)
class CallInfo:
    call_id: str
    org_id: str
    source: str  # "replay" | "whip"
    started_at: str  # UTC ISO 8601 with milliseconds, e.g. 2026-11-27T16:32:56.123Z
    ended_at: str | None = None
    status: str = "active"  # active | ended | failed
    end_reason: str | None = None
    fixture: str | None = None  # fixture name for replays (a file name, never a full path with PHI)
    escalated: bool = False


@dataclass(frozen=True, slots=True)
class TrackInfo:
    call_id: str
    track: int
    suite: int  # SFrame cipher suite of the sealed recording
    kid: int
    wrapped_key: WrappedKey
    frames_received: int = 0
    frames_sealed: int = 0
    frames_lost: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class UtteranceRecord:
    """A stored final utterance. `text` is already redacted; stores never see anything else."""

    call_id: str
    track: int
    seq: int
    start: float
    end: float
    text: str
    committed_at: str  # UTC ISO 8601 with milliseconds
    redactions: Mapping[str, int] = field(default_factory=dict)  # placeholder name -> count


class TranscriptStore(Protocol):
    async def create_call(self, call: CallInfo) -> None: ...
    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None: ...
    async def put_track(self, track: TrackInfo) -> None: ...
    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None: ...
    async def get_track(self, call_id: str, track: int) -> TrackInfo: ...
    async def list_tracks(self, call_id: str) -> list[TrackInfo]: ...
    async def append_utterance(self, utt: UtteranceRecord) -> None: ...
    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]: ...
    async def get_call(self, call_id: str) -> CallInfo: ...
    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]: ...
    async def close(self) -> None: ...


class RecordingSink(Protocol):
    """Append-only byte sink for one track's sealed recording object."""

    async def append(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...  # durable on return (fsync for files)
    async def close(self) -> None: ...


class RecordingStore(Protocol):
    async def open_track(self, call_id: str, track: int) -> RecordingSink: ...
    async def read_track(self, call_id: str, track: int) -> bytes: ...
    async def delete_call(self, call_id: str) -> None: ...
    async def close(self) -> None: ...


class KeyProvider(Protocol):
    """Wraps data keys under a key-encryption key. Local key file by default; fits KMS / Vault Transit."""

    def wrap(self, key: bytes, context: bytes) -> WrappedKey: ...
    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...
    def rotate(self) -> int: ...  # creates a new KEK version, returns it
    def current(self) -> tuple[str, int]: ...  # (kek_id, version) used by wrap()

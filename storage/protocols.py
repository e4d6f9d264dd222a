"""The narrow protocols the worker talks to, and the records that cross them.

Backends: `storage.local` (SQLite + files, the embedded default), PostgreSQL + S3 (`storage.sql.postgres`,
`storage.s3_recordings`, opened by `storage.factory` only), `storage.memory` (in-memory fakes for unit
tests). All methods are async; blocking backends run their I/O in a thread so the event loop never waits on
disk.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from storage.errors import InvalidIdError

_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TRACKS = 1024


def validate_call_id(call_id: object) -> str:
    """Return `call_id` if it is opaque and path-safe (`[A-Za-z0-9_-]{1,64}`), else raise InvalidIdError.

    Every backend calls this before a call id reaches a query, an object key or a file path.
    """
    if not isinstance(call_id, str) or _CALL_ID.fullmatch(call_id) is None:
        shown = call_id[:80] if isinstance(call_id, str) else type(call_id).__name__
        raise InvalidIdError(f"invalid call id {shown!r}: expected 1-64 of [A-Za-z0-9_-]")
    return call_id


def validate_track(track: object) -> int:
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < MAX_TRACKS:
        raise InvalidIdError(f"invalid track number {track!r}: expected an int in 0..{MAX_TRACKS - 1}")
    return track


def validate_org_id(org_id: object) -> str:
    if not isinstance(org_id, str) or not 0 < len(org_id) <= 128 or not org_id.isprintable():
        raise InvalidIdError("invalid org id: expected 1-128 printable characters")
    return org_id


def format_timestamp(dt: datetime) -> str:
    """The one stored time format: UTC, ISO 8601, milliseconds, `Z` (2026-11-27T16:32:56.123Z)."""
    if dt.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp with a zone (`Z` or an offset); naive times are refused."""
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid timestamp {str(value)[:40]!r}: expected ISO 8601 with a zone") from None
    if dt.tzinfo is None:
        raise ValueError(f"invalid timestamp {value[:40]!r}: no time zone")
    return dt


def canonical_timestamp(value: str) -> str:
    """Normalise a stored timestamp so that string order is time order (backends compare them as text)."""
    return format_timestamp(parse_timestamp(value))


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
    source: str  # "replay" | "whip" | "media-streams"
    started_at: str  # UTC ISO 8601 with milliseconds, e.g. 2026-11-27T16:32:56.123Z
    ended_at: str | None = None
    status: str = "active"  # active | ended | failed
    end_reason: str | None = None
    fixture: str | None = None  # fixture name for replays (a file name, never a full path with PHI)
    escalated: bool = False
    external_id: str | None = None  # the provider's id of the call (media streams: the callSid)
    pod_id: str | None = None  # the serve process that took it (`--pod-id`); None for replays


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
    # True once retention (or an operator) destroyed the key; `wrapped_key.blob` is then b"".
    key_destroyed: bool = False


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


@dataclass(frozen=True, slots=True)
class TrackKey:
    """A track's wrapped data key as listed for re-wrapping (`rewrap_all`)."""

    call_id: str
    track: int
    wrapped: WrappedKey


@dataclass(frozen=True, slots=True)
class CallKey:
    """A call's wrapped transcript-text key as listed for re-wrapping (`rewrap_all`)."""

    call_id: str
    wrapped: WrappedKey


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """Per-organisation policy. `retention_days=None` keeps calls until deleted by hand."""

    org_id: str
    phi_protection: bool = True
    e2ee_required: bool = False
    recording_enabled: bool = True
    retention_days: int | None = None
    updated_at: str | None = None  # set by put_settings when None


class TranscriptStore(Protocol):
    async def create_call(self, call: CallInfo) -> None: ...
    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None: ...
    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        """Mark calls still `active` failed with `reason`: those of `pod_id` (a pod restarting), and/or
        those started before `started_before` (older than any call can run: their pod is gone). At least
        one filter is required. Returns the call ids marked."""
        ...

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

    # Envelope keys (rotation, crypto-shredding).
    def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        """Every track key not yet destroyed, in (call_id, track) order, fetched in pages."""
        ...

    async def replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, *, expected: WrappedKey | None = None
    ) -> bool:
        """Swap in a re-wrapped key. Never revives a destroyed key; with `expected`, only if the stored
        key still equals it. Returns whether the key was replaced."""
        ...

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        """Erase the wrapped key (the recording becomes unrecoverable). True if this call destroyed it."""
        ...

    # Retention.
    async def list_calls_ended_before(
        self,
        org_id: str,
        cutoff: datetime,
        *,
        limit: int = 500,
        unended_started_before: datetime | None = None,
    ) -> list[CallInfo]:
        """Calls that ended before `cutoff`, and (with `unended_started_before`) calls that never ended and
        started before that time (abandoned: their worker died mid-call), oldest first (end, else start)."""
        ...

    async def delete_call(self, call_id: str) -> bool:
        """Delete the call, its tracks and utterances. True if this call deleted it (False: already gone)."""
        ...

    # Organisation settings.
    async def get_settings(self, org_id: str) -> OrgSettings:
        """The org's stored settings, or the defaults (updated_at None) if none were stored."""
        ...

    async def put_settings(self, settings: OrgSettings) -> OrgSettings: ...
    async def list_settings(self) -> list[OrgSettings]: ...


@runtime_checkable
class CallKeyStore(Protocol):
    """A call's wrapped transcript-text data key (see `storage.sealed_text`), kept on the call's row.

    Implemented by the SQLite and PostgreSQL stores; `run_retention` destroys it first when present.
    """

    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        """Store the call's wrapped text key if it has none yet (and none was destroyed). True if stored
        now; False if the call already has (or had) one. NotFoundError if the call does not exist."""
        ...

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        """The wrapped text key; None if never set; `blob == b""` once destroyed. NotFoundError if no call."""
        ...

    async def destroy_call_key(self, call_id: str) -> bool:
        """Erase the wrapped text key (the call's text becomes unreadable). True if this call destroyed it."""
        ...

    def iter_call_keys(self) -> AsyncIterator[CallKey]:
        """Every text key set and not destroyed, in call_id order, fetched in pages (KEK rotation)."""
        ...

    async def replace_call_key(self, call_id: str, wrapped: WrappedKey, *, expected: WrappedKey) -> bool:
        """Swap in a re-wrapped text key, only if the stored one still equals `expected` (never revives a
        destroyed key). Returns whether the key was replaced."""
        ...


@runtime_checkable
class KeyedTranscriptStore(TranscriptStore, CallKeyStore, Protocol):
    """A TranscriptStore that also keeps call text keys (what `SealedTranscriptStore` wraps)."""

    async def replace_utterance_text(
        self, call_id: str, track: int, seq: int, *, expected: str, text: str
    ) -> bool:
        """Compare-and-set one stored utterance's `text` (re-sealing text stored under an old format):
        True if its text equalled `expected` and is now `text`. Nothing else of the row, and no other row,
        changes; a missing utterance gives False."""
        ...


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


# Record checks shared by every backend: a store normalises what it is given with these before writing, so
# all backends accept and refuse the same inputs and return the same values.

_STATUSES = ("active", "ended", "failed")


def _check_float(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_call(call: CallInfo) -> CallInfo:
    validate_call_id(call.call_id)
    validate_org_id(call.org_id)
    if call.status not in _STATUSES:
        raise ValueError(f"call {call.call_id}: status must be one of {_STATUSES}, got {call.status!r}")
    ended = None if call.ended_at is None else canonical_timestamp(call.ended_at)
    return replace(call, started_at=canonical_timestamp(call.started_at), ended_at=ended)


def check_end(status: str, ended_at: str) -> str:
    if status not in ("ended", "failed"):
        raise ValueError(f"end status must be 'ended' or 'failed', got {status!r}")
    return canonical_timestamp(ended_at)


def check_track(track: TrackInfo) -> TrackInfo:
    validate_call_id(track.call_id)
    validate_track(track.track)
    if track.key_destroyed or not track.wrapped_key.blob:
        raise ValueError(f"call {track.call_id} track {track.track}: a new track needs a wrapped key")
    if not 0 <= track.kid < 2**64:
        raise ValueError(f"call {track.call_id} track {track.track}: KID out of range")
    check_count("suite", track.suite)
    check_counts(track.frames_received, track.frames_sealed, track.frames_lost, track.duration_s)
    return track


def check_counts(received: int, sealed: int, lost: int, duration_s: float) -> float:
    for name, value in (("received", received), ("sealed", sealed), ("lost", lost)):
        check_count(name, value)
    return _check_float("duration_s", duration_s)


def check_utterance(utt: UtteranceRecord) -> UtteranceRecord:
    validate_call_id(utt.call_id)
    validate_track(utt.track)
    check_count("seq", utt.seq)
    start, end = _check_float("start", utt.start), _check_float("end", utt.end)
    if end < start:
        raise ValueError(f"call {utt.call_id} track {utt.track} seq {utt.seq}: end {end} < start {start}")
    redactions = {}
    for name, count in sorted(utt.redactions.items()):
        if not isinstance(name, str):
            raise ValueError("redaction names must be strings")
        redactions[name] = check_count(f"redactions[{name!r}]", count)
    return replace(
        utt, start=start, end=end, committed_at=canonical_timestamp(utt.committed_at), redactions=redactions
    )


def check_settings(settings: OrgSettings, now: datetime) -> OrgSettings:
    validate_org_id(settings.org_id)
    days = settings.retention_days
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ValueError(f"org {settings.org_id}: retention_days must be None or an int >= 1, got {days!r}")
    updated = (
        format_timestamp(now) if settings.updated_at is None else canonical_timestamp(settings.updated_at)
    )
    return replace(
        settings,
        phi_protection=bool(settings.phi_protection),
        e2ee_required=bool(settings.e2ee_required),
        recording_enabled=bool(settings.recording_enabled),
        updated_at=updated,
    )

"""In-memory fakes of TranscriptStore and RecordingStore for unit tests elsewhere.

They behave like the real backends (same validation, same errors, same ordering, idempotent retries,
conflicts), which `tests/storage_contract.py` checks by running the same suite on them. Not durable, not
shared between processes. `fail_next(n, exc)` makes the next n operations raise, to test error paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

from storage.errors import ConflictError, NotFoundError, StorageUnavailableError, StoreClosedError
from storage.protocols import (
    CallInfo,
    OrgSettings,
    TrackInfo,
    TrackKey,
    UtteranceRecord,
    WrappedKey,
    check_call,
    check_counts,
    check_end,
    check_settings,
    check_track,
    check_utterance,
    format_timestamp,
    validate_call_id,
    validate_org_id,
    validate_track,
)


class _Faults:
    def __init__(self) -> None:
        self._failures = 0
        self._exc: Exception = StorageUnavailableError("injected failure")
        self.closed = False

    def fail_next(self, n: int = 1, exc: Exception | None = None) -> None:
        self._failures = n
        self._exc = exc or StorageUnavailableError("injected failure")

    def check(self, what: str) -> None:
        if self.closed:
            raise StoreClosedError(f"{what} is closed")
        if self._failures:
            self._failures -= 1
            raise self._exc


class MemoryTranscriptStore(_Faults):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, CallInfo] = {}
        self.tracks: dict[tuple[str, int], TrackInfo] = {}
        self.utterances: dict[tuple[str, int, int], UtteranceRecord] = {}
        self.settings: dict[str, OrgSettings] = {}

    def _op(self) -> None:
        self.check("memory transcript store")

    def _need_call(self, call_id: str) -> CallInfo:
        try:
            return self.calls[call_id]
        except KeyError:
            raise NotFoundError(f"call {call_id} not found") from None

    def _need_track(self, call_id: str, track: int) -> TrackInfo:
        try:
            return self.tracks[(call_id, track)]
        except KeyError:
            raise NotFoundError(f"call {call_id} track {track} not found") from None

    async def create_call(self, call: CallInfo) -> None:
        c = check_call(call)
        self._op()
        old = self.calls.get(c.call_id)
        if old is None:
            self.calls[c.call_id] = c
        elif (old.org_id, old.source, old.started_at) != (c.org_id, c.source, c.started_at):
            raise ConflictError(f"call {c.call_id} already exists with different contents")

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        validate_call_id(call_id)
        ended = check_end(status, ended_at)
        self._op()
        call = self._need_call(call_id)
        self.calls[call_id] = replace(call, ended_at=ended, status=status, end_reason=reason)

    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        ended = check_end("failed", ended_at)
        if pod_id is None and started_before is None:
            raise ValueError("fail_active_calls needs a pod_id or a started_before")
        self._op()
        before = None if started_before is None else format_timestamp(started_before)
        marked = []
        for c in list(self.calls.values()):
            if c.ended_at is not None or (pod_id is not None and c.pod_id != pod_id):
                continue
            if before is not None and not c.started_at < before:
                continue
            self.calls[c.call_id] = replace(c, ended_at=ended, status="failed", end_reason=reason)
            marked.append(c.call_id)
        return sorted(marked)

    async def get_call(self, call_id: str) -> CallInfo:
        validate_call_id(call_id)
        self._op()
        return self._need_call(call_id)

    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]:
        self._op()
        calls = [c for c in self.calls.values() if org_id is None or c.org_id == org_id]
        return sorted(calls, key=lambda c: (c.started_at, c.call_id))

    async def list_calls_ended_before(
        self,
        org_id: str,
        cutoff: datetime,
        *,
        limit: int = 500,
        unended_started_before: datetime | None = None,
    ) -> list[CallInfo]:
        validate_org_id(org_id)
        self._op()
        before = format_timestamp(cutoff)
        started = format_timestamp(unended_started_before) if unended_started_before is not None else ""
        due = [
            c
            for c in self.calls.values()
            if c.org_id == org_id
            and (c.ended_at < before if c.ended_at is not None else c.started_at < started)
        ]
        return sorted(due, key=lambda c: (c.ended_at or c.started_at, c.call_id))[:limit]

    async def delete_call(self, call_id: str) -> bool:
        validate_call_id(call_id)
        self._op()
        if self.calls.pop(call_id, None) is None:
            return False
        for key in [k for k in self.tracks if k[0] == call_id]:
            del self.tracks[key]
        for ukey in [k for k in self.utterances if k[0] == call_id]:
            del self.utterances[ukey]
        return True

    async def put_track(self, track: TrackInfo) -> None:
        t = check_track(track)
        self._op()
        self._need_call(t.call_id)
        old = self.tracks.get((t.call_id, t.track))
        if old is None:
            self.tracks[(t.call_id, t.track)] = t
        elif (old.suite, old.kid, old.wrapped_key) != (t.suite, t.kid, t.wrapped_key):
            raise ConflictError(f"call {t.call_id} track {t.track} already exists with different contents")

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        validate_call_id(call_id)
        validate_track(track)
        duration = check_counts(received, sealed, lost, duration_s)
        self._op()
        t = self._need_track(call_id, track)
        self.tracks[(call_id, track)] = replace(
            t, frames_received=received, frames_sealed=sealed, frames_lost=lost, duration_s=duration
        )

    async def get_track(self, call_id: str, track: int) -> TrackInfo:
        validate_call_id(call_id)
        validate_track(track)
        self._op()
        return self._need_track(call_id, track)

    async def list_tracks(self, call_id: str) -> list[TrackInfo]:
        validate_call_id(call_id)
        self._op()
        return [t for k, t in sorted(self.tracks.items()) if k[0] == call_id]

    async def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        self._op()
        for key in sorted(self.tracks):
            t = self.tracks.get(key)  # look again: the store may change between our yields
            if t is not None and not t.key_destroyed:
                yield TrackKey(t.call_id, t.track, t.wrapped_key)

    async def replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, *, expected: WrappedKey | None = None
    ) -> bool:
        validate_call_id(call_id)
        validate_track(track)
        if not wrapped.blob:
            raise ValueError("replace_wrapped_key needs a wrapped key; use destroy_track_key to destroy one")
        self._op()
        t = self.tracks.get((call_id, track))
        if t is None or t.key_destroyed or (expected is not None and t.wrapped_key != expected):
            return False
        self.tracks[(call_id, track)] = replace(t, wrapped_key=wrapped)
        return True

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        validate_call_id(call_id)
        validate_track(track)
        self._op()
        t = self.tracks.get((call_id, track))
        if t is None or t.key_destroyed:
            return False
        self.tracks[(call_id, track)] = replace(
            t, wrapped_key=replace(t.wrapped_key, blob=b""), key_destroyed=True
        )
        return True

    async def append_utterance(self, utt: UtteranceRecord) -> None:
        u = check_utterance(utt)
        self._op()
        self._need_call(u.call_id)
        key = (u.call_id, u.track, u.seq)
        old = self.utterances.get(key)
        if old is None:
            self.utterances[key] = u
        elif old != u:
            raise ConflictError(
                f"utterance {u.call_id}/{u.track}/{u.seq} already exists with different contents"
            )

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        validate_call_id(call_id)
        self._op()
        self._need_call(call_id)
        utts = [u for k, u in self.utterances.items() if k[0] == call_id]
        return [replace(u, redactions=dict(u.redactions)) for u in sorted(utts, key=_utt_order)]

    async def get_settings(self, org_id: str) -> OrgSettings:
        validate_org_id(org_id)
        self._op()
        return self.settings.get(org_id, OrgSettings(org_id))

    async def put_settings(self, settings: OrgSettings) -> OrgSettings:
        s = check_settings(settings, datetime.now(UTC))
        self._op()
        self.settings[s.org_id] = s
        return s

    async def list_settings(self) -> list[OrgSettings]:
        self._op()
        return [self.settings[k] for k in sorted(self.settings)]

    async def close(self) -> None:
        self.closed = True


def _utt_order(u: UtteranceRecord) -> tuple[float, int, int]:
    return (u.start, u.track, u.seq)


class MemoryRecordingSink:
    def __init__(self, store: MemoryRecordingStore, key: tuple[str, int]) -> None:
        self._store = store
        self._key = key
        self._pending = bytearray()
        self._closed = False

    async def append(self, data: bytes) -> None:
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")
        self._store.check("memory recording store")
        self._pending += data

    async def flush(self) -> None:
        """Moves appended bytes into the store (what a real backend makes durable here)."""
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")
        self._store.check("memory recording store")
        self._store.objects.setdefault(self._key, bytearray()).extend(self._pending)
        self._pending.clear()

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            self._store.open_keys.discard(self._key)


class MemoryRecordingStore(_Faults):
    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, int], bytearray] = {}
        self.open_keys: set[tuple[str, int]] = set()

    async def open_track(self, call_id: str, track: int) -> MemoryRecordingSink:
        validate_call_id(call_id)
        validate_track(track)
        self.check("memory recording store")
        key = (call_id, track)
        if key in self.open_keys:
            raise ConflictError(f"call {call_id} track {track} is already open for writing")
        self.open_keys.add(key)
        self.objects.setdefault(key, bytearray())
        return MemoryRecordingSink(self, key)

    async def read_track(self, call_id: str, track: int) -> bytes:
        validate_call_id(call_id)
        validate_track(track)
        self.check("memory recording store")
        try:
            return bytes(self.objects[(call_id, track)])
        except KeyError:
            raise NotFoundError(f"recording of call {call_id} track {track} not found") from None

    async def delete_call(self, call_id: str) -> None:
        validate_call_id(call_id)
        self.check("memory recording store")
        if any(key[0] == call_id for key in self.open_keys):
            raise ConflictError(f"call {call_id} is being recorded; close its tracks before deleting it")
        for key in [k for k in self.objects if k[0] == call_id]:
            del self.objects[key]

    async def close(self) -> None:
        self.closed = True

"""In-memory fakes of TranscriptStore and RecordingStore for unit tests elsewhere.

They behave like the real backends (same validation, same errors, same ordering, idempotent retries,
conflicts), which `tests/storage_contract.py` checks by running the same suite on them. Not durable, not
shared between processes. `fail_next(n, exc)` makes the next n operations raise, to test error paths.
"""

from __future__ import annotations

from dataclasses import replace

from storage.checked import CheckedTranscriptStore, call_not_found
from storage.errors import ConflictError, NotFoundError, StorageUnavailableError, StoreClosedError
from storage.protocols import (
    CallInfo,
    OrgSettings,
    TrackInfo,
    TrackKey,
    UtteranceRecord,
    WrappedKey,
    validate_call_id,
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


class MemoryTranscriptStore(_Faults, CheckedTranscriptStore):
    """The TranscriptStore primitives on dicts (the checks are `CheckedTranscriptStore`'s, as for SQL)."""

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
            raise call_not_found(call_id) from None

    async def close(self) -> None:
        self.closed = True

    async def _insert_call(self, c: CallInfo) -> bool:
        self._op()
        return self.calls.setdefault(c.call_id, c) is c

    async def _get_call(self, call_id: str) -> CallInfo | None:
        self._op()
        return self.calls.get(call_id)

    async def _end_call(self, call_id: str, ended: str, status: str, reason: str | None) -> bool:
        self._op()
        call = self.calls.get(call_id)
        if call is not None:
            self.calls[call_id] = replace(call, ended_at=ended, status=status, end_reason=reason)
        return call is not None

    async def _fail_active_calls(
        self, ended: str, reason: str, pod_id: str | None, started_before: str | None
    ) -> list[str]:
        self._op()
        stale = [
            c
            for c in self.calls.values()
            if c.ended_at is None
            and (pod_id is None or c.pod_id == pod_id)
            and (started_before is None or c.started_at < started_before)
        ]
        for c in stale:
            self.calls[c.call_id] = replace(c, ended_at=ended, status="failed", end_reason=reason)
        return [c.call_id for c in stale]

    async def _list_calls(self, org_id: str | None) -> list[CallInfo]:
        self._op()
        calls = [c for c in self.calls.values() if org_id is None or c.org_id == org_id]
        return sorted(calls, key=lambda c: (c.started_at, c.call_id))

    async def _calls_ended_before(self, org_id: str, before: str, started: str, limit: int) -> list[CallInfo]:
        self._op()
        due = [
            c
            for c in self.calls.values()
            if c.org_id == org_id
            and (c.ended_at < before if c.ended_at is not None else c.started_at < started)
        ]
        return sorted(due, key=lambda c: (c.ended_at or c.started_at, c.call_id))[:limit]

    async def _delete_call(self, call_id: str) -> bool:
        self._op()
        if self.calls.pop(call_id, None) is None:
            return False
        for key in [k for k in self.tracks if k[0] == call_id]:
            del self.tracks[key]
        for ukey in [k for k in self.utterances if k[0] == call_id]:
            del self.utterances[ukey]
        return True

    async def _insert_track(self, t: TrackInfo) -> bool:
        self._op()
        self._need_call(t.call_id)
        return self.tracks.setdefault((t.call_id, t.track), t) is t

    async def _get_track(self, call_id: str, track: int) -> TrackInfo | None:
        self._op()
        return self.tracks.get((call_id, track))

    async def _list_tracks(self, call_id: str) -> list[TrackInfo]:
        self._op()
        return [t for k, t in sorted(self.tracks.items()) if k[0] == call_id]

    async def _update_track_counts(
        self, call_id: str, track: int, frames: tuple[int, int, int], duration_s: float
    ) -> bool:
        self._op()
        t = self.tracks.get((call_id, track))
        if t is not None:
            received, sealed, lost = frames
            self.tracks[(call_id, track)] = replace(
                t, frames_received=received, frames_sealed=sealed, frames_lost=lost, duration_s=duration_s
            )
        return t is not None

    async def _wrapped_keys_after(self, after: tuple[str, int], limit: int) -> list[TrackKey]:
        self._op()
        keys = sorted(k for k, t in self.tracks.items() if k > after and not t.key_destroyed)[:limit]
        return [TrackKey(*k, self.tracks[k].wrapped_key) for k in keys]

    async def _replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, expected: WrappedKey | None
    ) -> bool:
        self._op()
        t = self.tracks.get((call_id, track))
        if t is None or t.key_destroyed or (expected is not None and t.wrapped_key != expected):
            return False
        self.tracks[(call_id, track)] = replace(t, wrapped_key=wrapped)
        return True

    async def _destroy_track_key(self, call_id: str, track: int, now: str) -> bool:
        self._op()
        t = self.tracks.get((call_id, track))
        if t is None or t.key_destroyed:
            return False
        erased = replace(t.wrapped_key, blob=b"")
        self.tracks[(call_id, track)] = replace(t, wrapped_key=erased, key_destroyed=True)
        return True

    async def _insert_utterance(self, u: UtteranceRecord) -> bool:
        self._op()
        self._need_call(u.call_id)
        return self.utterances.setdefault((u.call_id, u.track, u.seq), u) is u

    async def _get_utterance(self, call_id: str, track: int, seq: int) -> UtteranceRecord | None:
        self._op()
        return self.utterances.get((call_id, track, seq))

    async def _get_utterances(self, call_id: str) -> list[UtteranceRecord] | None:
        self._op()
        if call_id not in self.calls:
            return None
        utts = sorted((u for k, u in self.utterances.items() if k[0] == call_id), key=_utt_order)
        return [replace(u, redactions=dict(u.redactions)) for u in utts]

    async def _replace_utterance_text(
        self, call_id: str, track: int, seq: int, expected: str, text: str
    ) -> bool:
        self._op()
        u = self.utterances.get((call_id, track, seq))
        if u is None or u.text != expected:
            return False
        self.utterances[(call_id, track, seq)] = replace(u, text=text)
        return True

    async def _get_settings(self, org_id: str) -> OrgSettings | None:
        self._op()
        return self.settings.get(org_id)

    async def _put_settings(self, s: OrgSettings) -> None:
        self._op()
        self.settings[s.org_id] = s

    async def _list_settings(self) -> list[OrgSettings]:
        self._op()
        return [self.settings[k] for k in sorted(self.settings)]


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

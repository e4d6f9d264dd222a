"""`SqlTranscriptStore`: the TranscriptStore and CallKeyStore on SQL, for SQLite and PostgreSQL alike.

The checks and the meaning of "not found" and "conflict" are `storage.checked`'s; the SQL and the row
mapping are `storage.sql.statements`'; what differs between the databases is a `Database` (the dialect):
`storage.sql.sqlite` and `storage.sql.postgres`. Every operation is one statement, or a write followed by a
read that explains it, so neither dialect needs multi-statement transactions: identical retried writes are
accepted, different ones raise ConflictError, and deletes and key changes are conditional `UPDATE` /
`DELETE`s, so several pods can run retention and re-wrapping at once, each row changed by one of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

from storage.checked import CheckedTranscriptStore, call_not_found, paged
from storage.errors import StorageError
from storage.protocols import (
    CallInfo,
    CallKey,
    OrgSettings,
    TrackInfo,
    TrackKey,
    UtteranceRecord,
    WrappedKey,
    format_timestamp,
    validate_call_id,
)
from storage.sql import statements as q
from storage.sql.statements import Row


class ParentMissingError(StorageError):
    """A dialect's foreign-key violation: the row's call does not exist (validated input breaks no other
    constraint). The store turns it into NotFoundError naming the call."""


class Database(Protocol):
    """What a dialect gives the store. `sql` is a `storage.sql.statements` constant (`?` placeholders).
    Failures to reach the database raise StorageUnavailableError, use after `close()` StoreClosedError."""

    where: str  # the database, for messages (a path, or host:port/db; never credentials)

    def kid(self, kid: int) -> object:
        """A 64-bit SFrame KID as the `tracks.kid` column takes it (decimal text or NUMERIC)."""
        ...

    async def execute(self, sql: str, *args: object) -> int:
        """Run a write; the number of rows it changed. ParentMissingError on a foreign-key violation."""
        ...

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: object) -> Row | None: ...

    async def erased(self) -> None:
        """Rows or keys were erased: make sure no copy is left on disk outside the live tables."""
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...


class SqlTranscriptStore(CheckedTranscriptStore):
    """TranscriptStore and CallKeyStore over a `Database`. `await open()` connects and checks the schema
    now (the worker does so at start, to fail early); otherwise the first call does."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _insert(self, sql: str, args: tuple[object, ...]) -> bool:
        try:
            return await self.db.execute(sql, *args) == 1
        except ParentMissingError:
            raise call_not_found(str(args[0])) from None

    # calls --------------------------------------------------------------------------------------------
    async def _insert_call(self, c: CallInfo) -> bool:
        return await self._insert(q.CALL_INSERT, q.call_args(c))

    async def _get_call(self, call_id: str) -> CallInfo | None:
        row = await self.db.fetchrow(q.CALL_GET, call_id)
        return None if row is None else q.call_of(row)

    async def _end_call(self, call_id: str, ended: str, status: str, reason: str | None) -> bool:
        return await self.db.execute(q.CALL_END, ended, status, reason, call_id) == 1

    async def _fail_active_calls(
        self, ended: str, reason: str, pod_id: str | None, started_before: str | None
    ) -> list[str]:
        args = (ended, reason, pod_id, pod_id, started_before, started_before)
        return [str(r[0]) for r in await self.db.fetch(q.CALL_FAIL_STALE, *args)]

    async def _list_calls(self, org_id: str | None) -> list[CallInfo]:
        if org_id is None:
            return [q.call_of(r) for r in await self.db.fetch(q.CALL_LIST)]
        return [q.call_of(r) for r in await self.db.fetch(q.CALL_LIST_ORG, org_id)]

    async def _calls_ended_before(self, org_id: str, before: str, started: str, limit: int) -> list[CallInfo]:
        return [q.call_of(r) for r in await self.db.fetch(q.CALL_EXPIRED, org_id, before, started, limit)]

    async def _delete_call(self, call_id: str) -> bool:
        deleted = await self.db.execute(q.CALL_DELETE, call_id) == 1
        if deleted:
            await self.db.erased()
        return deleted

    # tracks and their keys ----------------------------------------------------------------------------
    async def _insert_track(self, t: TrackInfo) -> bool:
        w = t.wrapped_key
        ids = (t.call_id, t.track, t.suite, self.db.kid(t.kid), w.kek_id, w.kek_version, w.blob)
        counts = (t.frames_received, t.frames_sealed, t.frames_lost, float(t.duration_s))
        return await self._insert(q.TRACK_INSERT, (*ids, *counts))

    async def _get_track(self, call_id: str, track: int) -> TrackInfo | None:
        row = await self.db.fetchrow(q.TRACK_GET, call_id, track)
        return None if row is None else q.track_of(row)

    async def _list_tracks(self, call_id: str) -> list[TrackInfo]:
        return [q.track_of(r) for r in await self.db.fetch(q.TRACK_LIST, call_id)]

    async def _update_track_counts(
        self, call_id: str, track: int, frames: tuple[int, int, int], duration_s: float
    ) -> bool:
        return await self.db.execute(q.TRACK_COUNTS, *frames, duration_s, call_id, track) == 1

    async def _wrapped_keys_after(self, after: tuple[str, int], limit: int) -> list[TrackKey]:
        rows = await self.db.fetch(q.TRACK_KEYS_PAGE, *after, limit)
        return [TrackKey(r[0], r[1], q.wrapped_of(r[2], r[3], r[4])) for r in rows]

    async def _replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, expected: WrappedKey | None
    ) -> bool:
        new = (wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id, track)
        if expected is None:
            return await self.db.execute(q.TRACK_KEY_REPLACE, *new) == 1
        old = (expected.kek_id, expected.kek_version, expected.blob)
        return await self.db.execute(q.TRACK_KEY_SWAP, *new, *old) == 1

    async def _destroy_track_key(self, call_id: str, track: int, now: str) -> bool:
        destroyed = await self.db.execute(q.TRACK_KEY_DESTROY, now, call_id, track) == 1
        if destroyed:
            await self.db.erased()
        return destroyed

    # utterances ---------------------------------------------------------------------------------------
    async def _insert_utterance(self, u: UtteranceRecord) -> bool:
        return await self._insert(q.UTT_INSERT, q.utterance_args(u))

    async def _get_utterance(self, call_id: str, track: int, seq: int) -> UtteranceRecord | None:
        row = await self.db.fetchrow(q.UTT_GET, call_id, track, seq)
        return None if row is None else q.utterance_of(row)

    async def _get_utterances(self, call_id: str) -> list[UtteranceRecord] | None:
        rows = await self.db.fetch(q.UTT_LIST, call_id)
        return [q.utterance_of(r) for r in rows if r[0] is not None] if rows else None

    async def _replace_utterance_text(
        self, call_id: str, track: int, seq: int, expected: str, text: str
    ) -> bool:
        return await self.db.execute(q.UTT_TEXT_SWAP, text, call_id, track, seq, expected) == 1

    # org settings -------------------------------------------------------------------------------------
    async def _get_settings(self, org_id: str) -> OrgSettings | None:
        row = await self.db.fetchrow(q.SETTINGS_GET, org_id)
        return None if row is None else q.settings_of(row)

    async def _put_settings(self, s: OrgSettings) -> None:
        await self.db.execute(q.SETTINGS_PUT, *q.settings_args(s))

    async def _list_settings(self) -> list[OrgSettings]:
        return [q.settings_of(r) for r in await self.db.fetch(q.SETTINGS_LIST)]

    # call text keys (storage.sealed_text; the CallKeyStore protocol) ----------------------------------
    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        validate_call_id(call_id)
        if not wrapped.blob:
            raise ValueError("put_call_key needs a wrapped key; use destroy_call_key to destroy one")
        if await self.db.execute(q.CALL_KEY_PUT, wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id):
            return True
        if await self.db.fetchrow(q.CALL_EXISTS, call_id) is None:
            raise call_not_found(call_id)
        return False

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        validate_call_id(call_id)
        row = await self.db.fetchrow(q.CALL_KEY_GET, call_id)
        if row is None:
            raise call_not_found(call_id)
        return None if row[0] is None else q.wrapped_of(row[0], row[1], row[2])

    def iter_call_keys(self) -> AsyncIterator[CallKey]:
        return paged(self._call_keys_after, "", lambda k: k.call_id)

    async def _call_keys_after(self, after: str, limit: int) -> list[CallKey]:
        rows = await self.db.fetch(q.CALL_KEYS_PAGE, after, limit)
        return [CallKey(r[0], q.wrapped_of(r[1], r[2], r[3])) for r in rows]

    async def replace_call_key(self, call_id: str, wrapped: WrappedKey, *, expected: WrappedKey) -> bool:
        validate_call_id(call_id)
        if not wrapped.blob:
            raise ValueError("replace_call_key needs a wrapped key; use destroy_call_key to destroy one")
        new = (wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id)
        old = (expected.kek_id, expected.kek_version, expected.blob)
        return await self.db.execute(q.CALL_KEY_SWAP, *new, *old) == 1

    async def destroy_call_key(self, call_id: str) -> bool:
        validate_call_id(call_id)
        now = format_timestamp(datetime.now(UTC))
        destroyed = await self.db.execute(q.CALL_KEY_DESTROY, now, call_id) == 1
        if destroyed:  # as for track keys: no copy of the old key may stay behind
            await self.db.erased()
        return destroyed

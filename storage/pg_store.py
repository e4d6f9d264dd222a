"""Scale-out TranscriptStore on PostgreSQL (asyncpg, one connection pool per store).

Same semantics as the embedded store (`storage.sqlite_store`): identical retried writes are accepted,
different ones raise ConflictError, deletes and key changes are conditional `UPDATE`/`DELETE`s so several
pods can run retention and re-wrapping at once, each row changed by exactly one of them. Many pods share one
database; nothing about a call lives in a pod.

At open the schema must be current: an empty database is migrated (under the migration advisory lock, so
pods starting together are safe), anything behind raises SchemaError telling the user to run
`converse-worker migrate`. A server that cannot be reached (refused, reset, shut down, timed out) raises
StorageUnavailableError, so the caller may spool and retry; the pool reconnects by itself afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from redact.variables import safe_counts
from storage import migrate as migrations
from storage.errors import ConflictError, NotFoundError, StorageUnavailableError, StoreClosedError
from storage.protocols import (
    CallInfo,
    CallKey,
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

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (untyped)
Row = tuple[Any, ...]
KEY_PAGE = 500
ACQUIRE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0

# Errors that mean "the server is not reachable now" (never carry row data).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed" and friends
)

_CALL_INSERT = (
    "INSERT INTO calls (call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, "
    "escalated, external_id, pod_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO "
    "NOTHING"
)
_CALL_KEY = "SELECT call_id, org_id, source, started_at FROM calls WHERE call_id = $1"
_CALL_GET = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE call_id = $1"
)
_CALL_LIST = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls ORDER BY started_at, call_id"
)
_CALL_LIST_ORG = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE org_id = $1 ORDER BY started_at, call_id"
)
_CALL_EXPIRED = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE org_id = $1 AND ((ended_at IS NOT NULL AND ended_at < $2) OR "
    "(ended_at IS NULL AND started_at < $3)) ORDER BY COALESCE(ended_at, started_at), call_id LIMIT $4"
)
# Calls still active of one pod (a restart) and/or started before a time (their pod is gone).
_CALL_FAIL_STALE = (
    "UPDATE calls SET ended_at = $1, status = 'failed', end_reason = $2 WHERE ended_at IS NULL AND "
    "($3::text IS NULL OR pod_id = $3) AND ($4::text IS NULL OR started_at < $4) RETURNING call_id"
)
_TRACK_INSERT = (
    "INSERT INTO tracks (call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, "
    "frames_sealed, frames_lost, duration_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT DO NOTHING"
)
_TRACK_KEY = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key FROM tracks "
    "WHERE call_id = $1 AND track = $2"
)
_TRACK_GET = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, "
    "frames_sealed, frames_lost, duration_s FROM tracks WHERE call_id = $1 AND track = $2"
)
_TRACK_LIST = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, "
    "frames_sealed, frames_lost, duration_s FROM tracks WHERE call_id = $1 ORDER BY track"
)
_KEYS_PAGE = (
    "SELECT call_id, track, kek_id, kek_version, wrapped_key FROM tracks WHERE wrapped_key IS NOT NULL "
    "AND (call_id, track) > ($1, $2) ORDER BY call_id, track LIMIT $3"
)
_UTT_INSERT = (
    "INSERT INTO utterances (call_id, track, seq, start_s, end_s, text, committed_at, redactions) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
)
_UTT_KEY = (
    "SELECT call_id, track, seq, start_s, end_s, text, committed_at, redactions FROM utterances "
    "WHERE call_id = $1 AND track = $2 AND seq = $3"
)
_UTT_LIST = (
    "SELECT call_id, track, seq, start_s, end_s, text, committed_at, redactions FROM utterances "
    "WHERE call_id = $1 ORDER BY start_s, track, seq"
)
_SETTINGS_GET = (
    "SELECT org_id, phi_protection, e2ee_required, recording_enabled, retention_days, updated_at "
    "FROM org_settings WHERE org_id = $1"
)
_SETTINGS_PUT = (
    "INSERT INTO org_settings (org_id, phi_protection, e2ee_required, recording_enabled, "
    "retention_days, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id) DO UPDATE "
    "SET phi_protection = $2, e2ee_required = $3, recording_enabled = $4, retention_days = $5, "
    "updated_at = $6"
)
_SETTINGS_LIST = (
    "SELECT org_id, phi_protection, e2ee_required, recording_enabled, retention_days, updated_at "
    "FROM org_settings ORDER BY org_id"
)


def _count(status: str) -> int:
    """Rows affected, from an asyncpg command status such as `INSERT 0 1` or `UPDATE 2`."""
    return int(status.rsplit(" ", 1)[-1])


def _call(r: Row) -> CallInfo:
    return CallInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], r[10])


def _track(r: Row) -> TrackInfo:
    blob = b"" if r[6] is None else bytes(r[6])
    wrapped = WrappedKey(kek_id=r[4], kek_version=r[5], blob=blob)
    return TrackInfo(r[0], r[1], r[2], int(r[3]), wrapped, r[7], r[8], r[9], float(r[10]), r[6] is None)


def _utt(r: Row) -> UtteranceRecord:
    return UtteranceRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dict(r[7]))


def _settings(r: Row) -> OrgSettings:
    return OrgSettings(r[0], bool(r[1]), bool(r[2]), bool(r[3]), r[4], r[5])


def describe_url(database_url: str) -> str:
    """`host:port/db` of a database URL, for messages (never the user or password)."""
    parts = urlsplit(database_url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


async def _init_connection(conn: Conn) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PgTranscriptStore:
    """TranscriptStore (and CallKeyStore) on PostgreSQL. Create it, then `await open()` (or let the first
    call open it). `database_url` is a libpq-style `postgresql://user:pass@host:port/db` URL."""

    def __init__(self, database_url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._url = database_url
        self.where = describe_url(database_url)
        self._sizes = (min_size, max_size)
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._closed = False

    # plumbing -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and check the schema now (the worker calls this at start to fail early)."""
        await self._with(lambda conn: asyncio.sleep(0))

    async def migrate(self) -> list[int]:
        """Apply pending migrations (`converse-worker migrate`) on a connection of its own; returns the
        versions applied now. Safe to run from several pods at once (advisory lock)."""
        if self._closed:
            raise StoreClosedError(f"transcript store {self.where} is closed")
        try:
            conn = await asyncpg.connect(self._url, timeout=ACQUIRE_TIMEOUT_S)
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"postgresql {self.where}: {type(exc).__name__}: {exc}") from None
        try:
            return await migrations.migrate_postgres(conn)
        finally:
            await conn.close()

    async def _ensure_pool(self) -> Any:
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self._url,
                    min_size=self._sizes[0],
                    max_size=self._sizes[1],
                    command_timeout=COMMAND_TIMEOUT_S,
                    init=_init_connection,
                )
                try:
                    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                        if await migrations.pg_is_empty(conn):
                            await migrations.migrate_postgres(conn)
                        await migrations.check_postgres_schema(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._closed:
            raise StoreClosedError(f"transcript store {self.where} is closed")
        try:
            pool = await self._ensure_pool()
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                yield conn
        except _UNAVAILABLE as exc:  # messages name the failure, never row data
            raise StorageUnavailableError(f"postgresql {self.where}: {type(exc).__name__}: {exc}") from None

    async def _with(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(conn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except _UNAVAILABLE:
                pool.terminate()

    async def _insert_once(self, insert: str, args: Row, select: str, keys: int, what: str) -> None:
        """Insert a row; an identical existing row is fine (an idempotent retry), different conflicts"""
        async with self._conn() as conn, conn.transaction():
            try:
                status = await conn.execute(insert, *args)
            except asyncpg.exceptions.ForeignKeyViolationError:
                raise NotFoundError(f"call {args[0]} not found") from None
            if _count(status) == 0:
                existing = await conn.fetchrow(select, *args[:keys])
                if existing is None or tuple(existing) != args[: len(existing)]:
                    raise ConflictError(f"{what} already exists with different contents")

    # calls --------------------------------------------------------------------------------------------
    async def create_call(self, call: CallInfo) -> None:
        c = check_call(call)
        args: Row = (c.call_id, c.org_id, c.source, c.started_at, c.ended_at, c.status, c.end_reason)
        args = (*args, c.fixture, bool(c.escalated), c.external_id, c.pod_id)
        await self._insert_once(_CALL_INSERT, args, _CALL_KEY, 1, f"call {c.call_id}")

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        validate_call_id(call_id)
        ended = check_end(status, ended_at)
        sql = "UPDATE calls SET ended_at = $1, status = $2, end_reason = $3 WHERE call_id = $4"
        done = await self._with(lambda conn: conn.execute(sql, ended, status, reason, call_id))
        if _count(done) == 0:
            raise NotFoundError(f"call {call_id} not found")

    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        ended = check_end("failed", ended_at)
        if pod_id is None and started_before is None:
            raise ValueError("fail_active_calls needs a pod_id or a started_before")
        before = None if started_before is None else format_timestamp(started_before)
        rows = await self._with(lambda conn: conn.fetch(_CALL_FAIL_STALE, ended, reason, pod_id, before))
        return sorted(str(r[0]) for r in rows)

    async def get_call(self, call_id: str) -> CallInfo:
        validate_call_id(call_id)
        row = await self._with(lambda conn: conn.fetchrow(_CALL_GET, call_id))
        if row is None:
            raise NotFoundError(f"call {call_id} not found")
        return _call(row)

    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]:
        if org_id is None:
            rows = await self._with(lambda conn: conn.fetch(_CALL_LIST))
        else:
            rows = await self._with(lambda conn: conn.fetch(_CALL_LIST_ORG, org_id))
        return [_call(r) for r in rows]

    async def list_calls_ended_before(
        self,
        org_id: str,
        cutoff: datetime,
        *,
        limit: int = 500,
        unended_started_before: datetime | None = None,
    ) -> list[CallInfo]:
        validate_org_id(org_id)
        before = format_timestamp(cutoff)
        started = format_timestamp(unended_started_before) if unended_started_before is not None else ""
        rows = await self._with(lambda conn: conn.fetch(_CALL_EXPIRED, org_id, before, started, limit))
        return [_call(r) for r in rows]

    async def delete_call(self, call_id: str) -> bool:
        validate_call_id(call_id)
        status = await self._with(lambda conn: conn.execute("DELETE FROM calls WHERE call_id = $1", call_id))
        return _count(status) == 1

    # tracks and keys ----------------------------------------------------------------------------------
    async def put_track(self, track: TrackInfo) -> None:
        t = check_track(track)
        w = t.wrapped_key
        args: Row = (t.call_id, t.track, t.suite, Decimal(t.kid), w.kek_id, w.kek_version, w.blob)
        args = (*args, t.frames_received, t.frames_sealed, t.frames_lost, float(t.duration_s))
        await self._insert_once(_TRACK_INSERT, args, _TRACK_KEY, 2, f"call {t.call_id} track {t.track}")

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        validate_call_id(call_id)
        validate_track(track)
        duration = check_counts(received, sealed, lost, duration_s)
        sql = (
            "UPDATE tracks SET frames_received = $1, frames_sealed = $2, frames_lost = $3, duration_s = $4 "
            "WHERE call_id = $5 AND track = $6"
        )
        args = (received, sealed, lost, duration, call_id, track)
        if _count(await self._with(lambda conn: conn.execute(sql, *args))) == 0:
            raise NotFoundError(f"call {call_id} track {track} not found")

    async def get_track(self, call_id: str, track: int) -> TrackInfo:
        validate_call_id(call_id)
        validate_track(track)
        row = await self._with(lambda conn: conn.fetchrow(_TRACK_GET, call_id, track))
        if row is None:
            raise NotFoundError(f"call {call_id} track {track} not found")
        return _track(row)

    async def list_tracks(self, call_id: str) -> list[TrackInfo]:
        validate_call_id(call_id)
        return [_track(r) for r in await self._with(lambda conn: conn.fetch(_TRACK_LIST, call_id))]

    async def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        def page(after: tuple[str, int]) -> Callable[[Conn], Awaitable[list[Row]]]:
            return lambda conn: conn.fetch(_KEYS_PAGE, after[0], after[1], KEY_PAGE)

        after: tuple[str, int] = ("", -1)
        while True:
            rows = await self._with(page(after))
            for r in rows:
                yield TrackKey(r[0], r[1], WrappedKey(r[2], r[3], bytes(r[4])))
            if len(rows) < KEY_PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    async def replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, *, expected: WrappedKey | None = None
    ) -> bool:
        validate_call_id(call_id)
        validate_track(track)
        if not wrapped.blob:
            raise ValueError("replace_wrapped_key needs a wrapped key; use destroy_track_key to destroy one")
        sql = (
            "UPDATE tracks SET kek_id = $1, kek_version = $2, wrapped_key = $3 "
            "WHERE call_id = $4 AND track = $5 AND wrapped_key IS NOT NULL"
        )
        args: Row = (wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id, track)
        if expected is not None:
            sql += " AND kek_id = $6 AND kek_version = $7 AND wrapped_key = $8"
            args = (*args, expected.kek_id, expected.kek_version, expected.blob)
        return _count(await self._with(lambda conn: conn.execute(sql, *args))) == 1

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        validate_call_id(call_id)
        validate_track(track)
        sql = (
            "UPDATE tracks SET wrapped_key = NULL, key_destroyed_at = $1 "
            "WHERE call_id = $2 AND track = $3 AND wrapped_key IS NOT NULL"
        )
        now = format_timestamp(datetime.now(UTC))
        return _count(await self._with(lambda conn: conn.execute(sql, now, call_id, track))) == 1

    # call text keys (storage.sealed_text) ------------------------------------------------------------
    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        validate_call_id(call_id)
        if not wrapped.blob:
            raise ValueError("put_call_key needs a wrapped key; use destroy_call_key to destroy one")
        sql = (
            "UPDATE calls SET text_kek_id = $1, text_kek_version = $2, text_key = $3 "
            "WHERE call_id = $4 AND text_key IS NULL AND text_key_destroyed_at IS NULL"
        )
        async with self._conn() as conn:
            if _count(await conn.execute(sql, wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id)):
                return True
            if await conn.fetchval("SELECT 1 FROM calls WHERE call_id = $1", call_id) is None:
                raise NotFoundError(f"call {call_id} not found")
            return False

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        validate_call_id(call_id)
        sql = "SELECT text_kek_id, text_kek_version, text_key FROM calls WHERE call_id = $1"
        row = await self._with(lambda conn: conn.fetchrow(sql, call_id))
        if row is None:
            raise NotFoundError(f"call {call_id} not found")
        if row[0] is None:
            return None
        return WrappedKey(row[0], row[1], b"" if row[2] is None else bytes(row[2]))

    async def iter_call_keys(self) -> AsyncIterator[CallKey]:
        sql = (
            "SELECT call_id, text_kek_id, text_kek_version, text_key FROM calls "
            "WHERE text_key IS NOT NULL AND call_id > $1 ORDER BY call_id LIMIT $2"
        )

        def page(after: str) -> Callable[[Conn], Awaitable[list[Row]]]:
            return lambda conn: conn.fetch(sql, after, KEY_PAGE)

        after = ""
        while True:
            rows = await self._with(page(after))
            for r in rows:
                yield CallKey(r[0], WrappedKey(r[1], r[2], bytes(r[3])))
            if len(rows) < KEY_PAGE:
                return
            after = rows[-1][0]

    async def replace_call_key(self, call_id: str, wrapped: WrappedKey, *, expected: WrappedKey) -> bool:
        validate_call_id(call_id)
        if not wrapped.blob:
            raise ValueError("replace_call_key needs a wrapped key; use destroy_call_key to destroy one")
        sql = (
            "UPDATE calls SET text_kek_id = $1, text_kek_version = $2, text_key = $3 WHERE call_id = $4 "
            "AND text_key IS NOT NULL AND text_kek_id = $5 AND text_kek_version = $6 AND text_key = $7"
        )
        new, old = (
            (wrapped.kek_id, wrapped.kek_version, wrapped.blob),
            (expected.kek_id, expected.kek_version),
        )
        args = (*new, call_id, *old, expected.blob)
        return _count(await self._with(lambda conn: conn.execute(sql, *args))) == 1

    async def destroy_call_key(self, call_id: str) -> bool:
        validate_call_id(call_id)
        sql = (
            "UPDATE calls SET text_key = NULL, text_key_destroyed_at = $1 "
            "WHERE call_id = $2 AND text_key IS NOT NULL"
        )
        now = format_timestamp(datetime.now(UTC))
        return _count(await self._with(lambda conn: conn.execute(sql, now, call_id))) == 1

    # utterances ---------------------------------------------------------------------------------------
    async def append_utterance(self, utt: UtteranceRecord) -> None:
        u = check_utterance(utt)
        # The column is unsealed: placeholder names from the fixed set only (a caller's name may be PHI).
        args = (u.call_id, u.track, u.seq, u.start, u.end, u.text, u.committed_at, safe_counts(u.redactions))
        what = f"utterance {u.call_id}/{u.track}/{u.seq}"
        await self._insert_once(_UTT_INSERT, args, _UTT_KEY, 3, what)

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        validate_call_id(call_id)
        async with self._conn() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if await conn.fetchval("SELECT 1 FROM calls WHERE call_id = $1", call_id) is None:
                raise NotFoundError(f"call {call_id} not found")
            rows = await conn.fetch(_UTT_LIST, call_id)
        return [_utt(r) for r in rows]

    # org settings -------------------------------------------------------------------------------------
    async def get_settings(self, org_id: str) -> OrgSettings:
        validate_org_id(org_id)
        row = await self._with(lambda conn: conn.fetchrow(_SETTINGS_GET, org_id))
        return OrgSettings(org_id) if row is None else _settings(row)

    async def put_settings(self, settings: OrgSettings) -> OrgSettings:
        s = check_settings(settings, datetime.now(UTC))
        args: Row = (s.org_id, s.phi_protection, s.e2ee_required, s.recording_enabled, s.retention_days)
        args = (*args, s.updated_at)
        await self._with(lambda conn: conn.execute(_SETTINGS_PUT, *args))
        return s

    async def list_settings(self) -> list[OrgSettings]:
        return [_settings(r) for r in await self._with(lambda conn: conn.fetch(_SETTINGS_LIST))]

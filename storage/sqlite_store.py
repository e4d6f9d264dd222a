"""Embedded TranscriptStore on SQLite (stdlib `sqlite3`).

Every statement runs on one dedicated worker thread (a single-thread executor that owns the connection), so
the event loop never waits on disk. WAL journal, `synchronous=FULL` (a committed write survives power loss),
foreign keys on, `secure_delete` on (deleted rows and destroyed keys are zeroed, not left in free pages), and
the WAL is checkpointed and truncated after a key is destroyed so the old wrapped key leaves the disk.

At open the schema must be current: an empty new database is migrated automatically, anything behind raises
`SchemaError` telling the user to run `converse-worker migrate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
Row = tuple[Any, ...]
# Full statements as literals (no string building): greppable, and nothing but `?` ever reaches them.
_CALL_INSERT = (
    "INSERT INTO calls (call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, "
    "escalated, external_id, pod_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_CALL_KEY = "SELECT call_id, org_id, source, started_at FROM calls WHERE call_id = ?"
_CALL_GET = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE call_id = ?"
)
_CALL_LIST = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls ORDER BY started_at, call_id"
)
_CALL_LIST_ORG = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE org_id = ? ORDER BY started_at, call_id"
)
_CALL_EXPIRED = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls WHERE org_id = ? AND ((ended_at IS NOT NULL AND ended_at < ?) OR "
    "(ended_at IS NULL AND started_at < ?)) ORDER BY COALESCE(ended_at, started_at), call_id LIMIT ?"
)
# Calls still active of one pod (a restart) and/or started before a time (their pod is gone).
_CALL_FAIL_STALE = (
    "UPDATE calls SET ended_at = ?, status = 'failed', end_reason = ? WHERE ended_at IS NULL AND "
    "(? IS NULL OR pod_id = ?) AND (? IS NULL OR started_at < ?) RETURNING call_id"
)
_TRACK_INSERT = (
    "INSERT INTO tracks (call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, "
    "frames_sealed, frames_lost, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO "
    "NOTHING"
)
_TRACK_KEY = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key FROM tracks WHERE call_id = ? "
    "AND track = ?"
)
_TRACK_GET = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, frames_sealed,"
    " frames_lost, duration_s FROM tracks WHERE call_id = ? AND track = ?"
)
_TRACK_LIST = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, frames_sealed,"
    " frames_lost, duration_s FROM tracks WHERE call_id = ? ORDER BY track"
)
_UTT_INSERT = (
    "INSERT INTO utterances (call_id, track, seq, start_s, end_s, text, committed_at, redactions) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_UTT_KEY = (
    "SELECT call_id, track, seq, start_s, end_s, text, committed_at, redactions FROM utterances WHERE "
    "call_id = ? AND track = ? AND seq = ?"
)
_UTT_LIST = (
    "SELECT call_id, track, seq, start_s, end_s, text, committed_at, redactions FROM utterances WHERE "
    "call_id = ? ORDER BY start_s, track, seq"
)
_SETTINGS_GET = (
    "SELECT org_id, phi_protection, e2ee_required, recording_enabled, retention_days, updated_at FROM "
    "org_settings WHERE org_id = ?"
)
_SETTINGS_PUT = (
    "INSERT OR REPLACE INTO org_settings (org_id, phi_protection, e2ee_required, recording_enabled, "
    "retention_days, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_SETTINGS_LIST = (
    "SELECT org_id, phi_protection, e2ee_required, recording_enabled, retention_days, updated_at FROM "
    "org_settings ORDER BY org_id"
)
KEY_PAGE = 500


def _call(r: Row) -> CallInfo:
    return CallInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], r[10])


def _stale_filter(pod_id: str | None, started_before: datetime | None) -> tuple[str | None, str | None]:
    if pod_id is None and started_before is None:
        raise ValueError("fail_active_calls needs a pod_id or a started_before")
    return pod_id, None if started_before is None else format_timestamp(started_before)


def _track(r: Row) -> TrackInfo:
    blob = b"" if r[6] is None else bytes(r[6])
    wrapped = WrappedKey(kek_id=r[4], kek_version=r[5], blob=blob)
    return TrackInfo(r[0], r[1], r[2], int(r[3]), wrapped, r[7], r[8], r[9], r[10], r[6] is None)


def _utt(r: Row) -> UtteranceRecord:
    return UtteranceRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]))


def _settings(r: Row) -> OrgSettings:
    return OrgSettings(r[0], bool(r[1]), bool(r[2]), bool(r[3]), r[4], r[5])


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _insert_once(conn: sqlite3.Connection, insert: str, args: Row, select: str, keys: int, what: str) -> None:
    """Insert a row; an identical existing row is fine (an idempotent retry), a different one conflicts.

    `select` takes the first `keys` of `args` and returns the columns that must match `args` from the start.
    """
    with _transaction(conn):
        try:
            cur = conn.execute(insert, args)
        except sqlite3.IntegrityError:  # validated input can only break the call's foreign key
            raise NotFoundError(f"call {args[0]} not found") from None
        if cur.rowcount == 0:
            existing = conn.execute(select, args[:keys]).fetchone()
            if existing is None or tuple(existing) != args[: len(existing)]:
                raise ConflictError(f"{what} already exists with different contents")


class LocalTranscriptStore:
    """TranscriptStore on one SQLite file. Create it, then `await open()` (or let the first call open it)."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="converse-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # plumbing -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and check the schema now (the worker calls this at start to fail early)."""
        await self._run(lambda conn: None)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosedError(f"transcript store {self.db_path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: no row data in these
            raise StorageUnavailableError(f"sqlite {self.db_path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        parent = self.db_path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)
        fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # owner-only from birth;
        os.close(fd)  # SQLite gives the -wal and -shm files the database file's mode
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=10.0)
        try:
            for pragma in (
                "journal_mode = WAL",
                "synchronous = FULL",
                "foreign_keys = ON",
                "secure_delete = ON",
            ):
                conn.execute(f"PRAGMA {pragma}")
            if migrations.is_empty(conn):
                migrations.migrate(conn)
            else:
                migrations.check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=False, cancel_futures=True)  # nothing queued holds up the exit

    # calls --------------------------------------------------------------------------------------------
    async def create_call(self, call: CallInfo) -> None:
        c = check_call(call)
        args: Row = (c.call_id, c.org_id, c.source, c.started_at, c.ended_at, c.status, c.end_reason)
        args = (*args, c.fixture, int(c.escalated), c.external_id, c.pod_id)
        what = f"call {c.call_id}"
        await self._run(lambda conn: _insert_once(conn, _CALL_INSERT, args, _CALL_KEY, 1, what))

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        validate_call_id(call_id)
        ended = check_end(status, ended_at)
        sql = "UPDATE calls SET ended_at = ?, status = ?, end_reason = ? WHERE call_id = ?"

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, (ended, status, reason, call_id)).rowcount == 0:
                raise NotFoundError(f"call {call_id} not found")

        await self._run(run)

    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        ended = check_end("failed", ended_at)
        pod, before = _stale_filter(pod_id, started_before)

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(_CALL_FAIL_STALE, (ended, reason, pod, pod, before, before)).fetchall()
            return sorted(str(r[0]) for r in rows)

        return await self._run(run)

    async def get_call(self, call_id: str) -> CallInfo:
        validate_call_id(call_id)
        row = await self._run(lambda conn: conn.execute(_CALL_GET, (call_id,)).fetchone())
        if row is None:
            raise NotFoundError(f"call {call_id} not found")
        return _call(row)

    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]:
        sql, args = (_CALL_LIST, ()) if org_id is None else (_CALL_LIST_ORG, (org_id,))
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
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
        started = format_timestamp(unended_started_before) if unended_started_before is not None else ""
        args = (org_id, format_timestamp(cutoff), started, limit)
        rows = await self._run(lambda conn: conn.execute(_CALL_EXPIRED, args).fetchall())
        return [_call(r) for r in rows]

    async def delete_call(self, call_id: str) -> bool:
        validate_call_id(call_id)

        def run(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM calls WHERE call_id = ?", (call_id,)).rowcount == 1
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return deleted

        return await self._run(run)

    # tracks and keys ----------------------------------------------------------------------------------
    async def put_track(self, track: TrackInfo) -> None:
        t = check_track(track)
        w = t.wrapped_key
        args: Row = (t.call_id, t.track, t.suite, str(t.kid), w.kek_id, w.kek_version, w.blob)
        args = (*args, t.frames_received, t.frames_sealed, t.frames_lost, float(t.duration_s))
        what = f"call {t.call_id} track {t.track}"
        await self._run(lambda conn: _insert_once(conn, _TRACK_INSERT, args, _TRACK_KEY, 2, what))

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        validate_call_id(call_id)
        validate_track(track)
        duration = check_counts(received, sealed, lost, duration_s)
        sql = (
            "UPDATE tracks SET frames_received = ?, frames_sealed = ?, frames_lost = ?, duration_s = ? "
            "WHERE call_id = ? AND track = ?"
        )
        args = (received, sealed, lost, duration, call_id, track)

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, args).rowcount == 0:
                raise NotFoundError(f"call {call_id} track {track} not found")

        await self._run(run)

    async def get_track(self, call_id: str, track: int) -> TrackInfo:
        validate_call_id(call_id)
        validate_track(track)
        row = await self._run(lambda conn: conn.execute(_TRACK_GET, (call_id, track)).fetchone())
        if row is None:
            raise NotFoundError(f"call {call_id} track {track} not found")
        return _track(row)

    async def list_tracks(self, call_id: str) -> list[TrackInfo]:
        validate_call_id(call_id)
        rows = await self._run(lambda conn: conn.execute(_TRACK_LIST, (call_id,)).fetchall())
        return [_track(r) for r in rows]

    async def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        sql = (
            "SELECT call_id, track, kek_id, kek_version, wrapped_key FROM tracks "
            "WHERE wrapped_key IS NOT NULL AND (call_id, track) > (?, ?) ORDER BY call_id, track LIMIT ?"
        )

        def page(after: tuple[str, int]) -> Callable[[sqlite3.Connection], list[Row]]:
            return lambda conn: conn.execute(sql, (*after, KEY_PAGE)).fetchall()

        after: tuple[str, int] = ("", -1)
        while True:
            rows = await self._run(page(after))
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
            "UPDATE tracks SET kek_id = ?, kek_version = ?, wrapped_key = ? "
            "WHERE call_id = ? AND track = ? AND wrapped_key IS NOT NULL"
        )
        args: Row = (wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id, track)
        if expected is not None:
            sql += " AND kek_id = ? AND kek_version = ? AND wrapped_key = ?"
            args = (*args, expected.kek_id, expected.kek_version, expected.blob)
        return await self._run(lambda conn: conn.execute(sql, args).rowcount == 1)

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        validate_call_id(call_id)
        validate_track(track)
        sql = (
            "UPDATE tracks SET wrapped_key = NULL, key_destroyed_at = ? "
            "WHERE call_id = ? AND track = ? AND wrapped_key IS NOT NULL"
        )
        args = (format_timestamp(datetime.now(UTC)), call_id, track)

        def run(conn: sqlite3.Connection) -> bool:
            destroyed = conn.execute(sql, args).rowcount == 1
            if destroyed:  # move the zeroed page into the database and truncate the WAL holding the old one
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return destroyed

        return await self._run(run)

    # call text keys (storage.sealed_text) ------------------------------------------------------------
    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        validate_call_id(call_id)
        if not wrapped.blob:
            raise ValueError("put_call_key needs a wrapped key; use destroy_call_key to destroy one")
        sql = (
            "UPDATE calls SET text_kek_id = ?, text_kek_version = ?, text_key = ? "
            "WHERE call_id = ? AND text_key IS NULL AND text_key_destroyed_at IS NULL"
        )
        args = (wrapped.kek_id, wrapped.kek_version, wrapped.blob, call_id)

        def run(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                if conn.execute(sql, args).rowcount == 1:
                    return True
                if conn.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone() is None:
                    raise NotFoundError(f"call {call_id} not found")
                return False

        return await self._run(run)

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        validate_call_id(call_id)
        sql = "SELECT text_kek_id, text_kek_version, text_key FROM calls WHERE call_id = ?"
        row = await self._run(lambda conn: conn.execute(sql, (call_id,)).fetchone())
        if row is None:
            raise NotFoundError(f"call {call_id} not found")
        if row[0] is None:
            return None
        return WrappedKey(row[0], row[1], b"" if row[2] is None else bytes(row[2]))

    async def iter_call_keys(self) -> AsyncIterator[CallKey]:
        sql = (
            "SELECT call_id, text_kek_id, text_kek_version, text_key FROM calls "
            "WHERE text_key IS NOT NULL AND call_id > ? ORDER BY call_id LIMIT ?"
        )

        def page(after: str) -> Callable[[sqlite3.Connection], list[Row]]:
            return lambda conn: conn.execute(sql, (after, KEY_PAGE)).fetchall()

        after = ""
        while True:
            rows = await self._run(page(after))
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
            "UPDATE calls SET text_kek_id = ?, text_kek_version = ?, text_key = ? WHERE call_id = ? "
            "AND text_key IS NOT NULL AND text_kek_id = ? AND text_kek_version = ? AND text_key = ?"
        )
        new, old = (
            (wrapped.kek_id, wrapped.kek_version, wrapped.blob),
            (expected.kek_id, expected.kek_version),
        )
        args = (*new, call_id, *old, expected.blob)
        return await self._run(lambda conn: conn.execute(sql, args).rowcount == 1)

    async def destroy_call_key(self, call_id: str) -> bool:
        validate_call_id(call_id)
        sql = (
            "UPDATE calls SET text_key = NULL, text_key_destroyed_at = ? "
            "WHERE call_id = ? AND text_key IS NOT NULL"
        )
        args = (format_timestamp(datetime.now(UTC)), call_id)

        def run(conn: sqlite3.Connection) -> bool:
            destroyed = conn.execute(sql, args).rowcount == 1
            if destroyed:  # as for track keys: the old page must leave the WAL too
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return destroyed

        return await self._run(run)

    # utterances ---------------------------------------------------------------------------------------
    async def append_utterance(self, utt: UtteranceRecord) -> None:
        u = check_utterance(utt)
        # The column is unsealed: placeholder names from the fixed set only (a caller's name may be PHI).
        redactions = json.dumps(safe_counts(u.redactions), sort_keys=True, separators=(",", ":"))
        args = (u.call_id, u.track, u.seq, u.start, u.end, u.text, u.committed_at, redactions)
        what = f"utterance {u.call_id}/{u.track}/{u.seq}"
        await self._run(lambda conn: _insert_once(conn, _UTT_INSERT, args, _UTT_KEY, 3, what))

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        validate_call_id(call_id)

        def run(conn: sqlite3.Connection) -> list[Row] | None:
            if conn.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone() is None:
                return None
            return conn.execute(_UTT_LIST, (call_id,)).fetchall()

        rows = await self._run(run)
        if rows is None:
            raise NotFoundError(f"call {call_id} not found")
        return [_utt(r) for r in rows]

    # org settings -------------------------------------------------------------------------------------
    async def get_settings(self, org_id: str) -> OrgSettings:
        validate_org_id(org_id)
        row = await self._run(lambda conn: conn.execute(_SETTINGS_GET, (org_id,)).fetchone())
        return OrgSettings(org_id) if row is None else _settings(row)

    async def put_settings(self, settings: OrgSettings) -> OrgSettings:
        s = check_settings(settings, datetime.now(UTC))
        args: Row = (s.org_id, int(s.phi_protection), int(s.e2ee_required), int(s.recording_enabled))
        args = (*args, s.retention_days, s.updated_at)
        await self._run(lambda conn: conn.execute(_SETTINGS_PUT, args))
        return s

    async def list_settings(self) -> list[OrgSettings]:
        rows = await self._run(lambda conn: conn.execute(_SETTINGS_LIST).fetchall())
        return [_settings(r) for r in rows]

"""The SQLite dialect (stdlib `sqlite3`) and `LocalTranscriptStore`, the embedded TranscriptStore.

Every statement runs on one dedicated worker thread (a single-thread executor that owns the connection), so
the event loop never waits on disk. WAL journal, `synchronous=FULL` (a committed write survives power loss),
foreign keys on, `secure_delete` on (deleted rows and destroyed keys are zeroed, not left in free pages), and
the WAL is checkpointed and truncated after anything is erased so the old pages leave the disk too.

At open the schema must be current: an empty new database is migrated automatically, anything behind raises
`SchemaError` telling the user to run `converse-worker migrate`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from storage import migrate as migrations
from storage.errors import StorageUnavailableError, StoreClosedError
from storage.files import private_dir
from storage.sql.statements import Row
from storage.sql.store import ParentMissingError, SqlTranscriptStore

T = TypeVar("T")
_PRAGMAS = ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON", "secure_delete = ON")


class SqliteDatabase:
    """The `storage.sql.store.Database` of one SQLite file."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.where = str(db_path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="converse-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def kid(self, kid: int) -> object:
        return str(kid)  # a TEXT column: SQLite integers stop at 2^63 - 1

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the database thread (connecting first if need be)."""
        if self._closed:
            raise StoreClosedError(f"transcript store {self.db_path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    async def execute(self, sql: str, *args: object) -> int:
        return await self.call(lambda conn: conn.execute(sql, args).rowcount)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        return await self.call(lambda conn: conn.execute(sql, args).fetchall())

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        return await self.call(lambda conn: conn.execute(sql, args).fetchone())

    async def erased(self) -> None:
        # Move the zeroed pages into the database file and truncate the WAL that holds the old ones.
        await self.call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))

    async def open(self) -> None:
        await self.call(lambda conn: None)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        try:
            return fn(self._conn)
        except sqlite3.IntegrityError:  # validated input can only break the call's foreign key
            raise ParentMissingError("no such call") from None
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: no row data in these
            raise StorageUnavailableError(f"sqlite {self.db_path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        private_dir(self.db_path.parent)
        fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # owner-only from birth;
        os.close(fd)  # SQLite gives the -wal and -shm files the database file's mode
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=10.0)
        try:
            for pragma in _PRAGMAS:
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


class LocalTranscriptStore(SqlTranscriptStore):
    """TranscriptStore (and CallKeyStore) on one SQLite file. Create it, then `await open()` (or let the
    first call open it)."""

    db: SqliteDatabase

    def __init__(self, db_path: Path | str) -> None:
        super().__init__(SqliteDatabase(Path(db_path)))
        self.db_path = self.db.db_path

"""The PostgreSQL dialect (asyncpg) and `PgTranscriptStore`, the scale-out TranscriptStore.

Many pods share one database; nothing about a call lives in a pod. `PgPool` is the connection part any
PostgreSQL-backed store uses (the audit log too): a pool opened on first use whose first connection checks
the schema (an empty database is migrated first, under the migration advisory lock, so pods starting
together are safe; anything behind raises SchemaError telling the user to run `converse-worker migrate`).
A server that cannot be reached (refused, reset, shut down, timed out) raises StorageUnavailableError naming
`host:port/db` and the failure, never row data, so the caller may spool and retry; the pool reconnects by
itself afterwards.

Imported by `storage.factory` only, when PostgreSQL is configured: a plain install has no asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from storage import migrate as migrations
from storage.errors import StorageUnavailableError, StoreClosedError
from storage.sql.statements import Row
from storage.sql.store import ParentMissingError, SqlTranscriptStore

Conn = Any  # asyncpg.Connection (untyped)
ACQUIRE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0

# Errors that mean "the server is not reachable now" (they never carry row data).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed" and friends
)


def describe_url(database_url: str) -> str:
    """`host:port/db` of a database URL, for messages (never the user or password)."""
    parts = urlsplit(database_url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


@lru_cache(maxsize=128)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the shared statements hold no other `?`)."""
    first, *rest = sql.split("?")
    return first + "".join(f"${n}{part}" for n, part in enumerate(rest, start=1))


def _count(status: str) -> int:
    """Rows affected, from an asyncpg command status such as `INSERT 0 1` or `UPDATE 2`."""
    return int(status.rsplit(" ", 1)[-1])


class PgPool:
    """A lazily opened asyncpg pool (see the module docstring). `name` says what uses it, in messages:
    `StoreClosedError("<name> <host:port/db> is closed")`."""

    def __init__(self, database_url: str, *, name: str, min_size: int = 1, max_size: int = 10) -> None:
        self._url = database_url
        self.name = name
        self.where = describe_url(database_url)
        self._sizes = (min_size, max_size)
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self.closed = False

    def unavailable(self, exc: BaseException) -> StorageUnavailableError:
        return StorageUnavailableError(f"postgresql {self.where}: {type(exc).__name__}: {exc}")

    def _check_open(self) -> None:
        if self.closed:
            raise StoreClosedError(f"{self.name} {self.where} is closed")

    async def _ensure(self) -> Any:
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self._url,
                    min_size=self._sizes[0],
                    max_size=self._sizes[1],
                    command_timeout=COMMAND_TIMEOUT_S,
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
    async def acquire(self) -> AsyncIterator[Conn]:
        """A pooled connection (opening the pool first if need be)."""
        self._check_open()
        try:
            pool = await self._ensure()
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                yield conn
        except UNAVAILABLE_ERRORS as exc:  # messages name the failure, never row data
            raise self.unavailable(exc) from None

    async def connect(self) -> Conn:
        """A connection of its own, outside the pool and without the schema check (`migrate`)."""
        self._check_open()
        try:
            return await asyncpg.connect(self._url, timeout=ACQUIRE_TIMEOUT_S)
        except UNAVAILABLE_ERRORS as exc:
            raise self.unavailable(exc) from None

    async def open(self) -> None:
        """Connect and check the schema now."""
        async with self.acquire():
            pass

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=CLOSE_TIMEOUT_S)
            except UNAVAILABLE_ERRORS:
                pool.terminate()


class PgDatabase(PgPool):
    """The `storage.sql.store.Database` of one PostgreSQL database."""

    def kid(self, kid: int) -> object:
        return Decimal(kid)  # NUMERIC(20, 0): KIDs go up to 2^64 - 1

    async def execute(self, sql: str, *args: object) -> int:
        async with self.acquire() as conn:
            try:
                return _count(await conn.execute(numbered(sql), *args))
            except asyncpg.exceptions.ForeignKeyViolationError:
                raise ParentMissingError("no such call") from None

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        async with self.acquire() as conn:
            return list(await conn.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(numbered(sql), *args)

    async def erased(self) -> None:
        """Nothing to do here: deleted tuples are the server's (autovacuum) to reclaim."""


class PgTranscriptStore(SqlTranscriptStore):
    """TranscriptStore (and CallKeyStore) on PostgreSQL. Create it, then `await open()` (or let the first
    call open it). `database_url` is a libpq-style `postgresql://user:pass@host:port/db` URL."""

    db: PgDatabase

    def __init__(self, database_url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__(
            PgDatabase(database_url, name="transcript store", min_size=min_size, max_size=max_size)
        )
        self.where = self.db.where

    async def migrate(self) -> list[int]:
        """Apply pending migrations (`converse-worker migrate`) on a connection of its own; returns the
        versions applied now. Safe to run from several pods at once (advisory lock)."""
        conn = await self.db.connect()
        try:
            return await migrations.migrate_postgres(conn)
        finally:
            await conn.close()

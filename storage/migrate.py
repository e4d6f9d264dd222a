"""Forward-only schema migrations for the embedded SQLite database and the PostgreSQL backend.

Migrations are `storage/migrations/sqlite/NNNN_name.sql`, numbered from 1 without gaps. `migrate(db)`
applies the missing ones in one transaction (`BEGIN IMMEDIATE`, so two migrators never both apply one) and
records each in `schema_version` with a SHA-256 of its text. There are no down migrations: a database newer
than this code, or one whose applied migration text has since changed, is refused, never "fixed".

PostgreSQL migrations live in `storage/migrations/postgres/` and follow the same rules; `migrate_postgres`
holds a session advisory lock while it works, so pods migrating at once apply each migration exactly once,
and applies each migration and its `schema_version` row in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from storage.errors import SchemaError
from storage.protocols import format_timestamp

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"""
MIGRATE_HINT = "run `converse-worker migrate`"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def bundled_migrations() -> list[Migration]:
    """The SQLite migrations shipped in the package, in order."""
    return _bundled("sqlite")


def bundled_postgres_migrations() -> list[Migration]:
    """The PostgreSQL migrations shipped in the package, in order."""
    return _bundled("postgres")


def _bundled(dialect: str) -> list[Migration]:
    folder = resources.files("storage").joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        m = _NAME.fullmatch(entry.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return _checked(found)


def _checked(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    for i, m in enumerate(ordered, start=1):
        if m.version != i:
            raise SchemaError(f"migrations must be numbered 1..N without gaps; found {m.version} at {i}")
    return ordered


def latest_version(migrations: Sequence[Migration] | None = None) -> int:
    ms = bundled_migrations() if migrations is None else _checked(migrations)
    return ms[-1].version if ms else 0


def _statements(sql: str) -> Iterator[str]:
    buf: list[str] = []
    for line in sql.splitlines(keepends=True):
        buf.append(line)
        text = "".join(buf)
        if sqlite3.complete_statement(text):
            if text.strip():
                yield text
            buf = []
    rest = "".join(line for line in buf if not line.lstrip().startswith("--")).strip()
    if rest:
        raise SchemaError("migration ends with an incomplete SQL statement")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def _applied(conn: sqlite3.Connection) -> dict[int, str]:
    if not _has_table(conn, "schema_version"):
        return {}
    return {int(v): str(c) for v, c in conn.execute("SELECT version, checksum FROM schema_version")}


def _verify(applied: dict[int, str], known: Sequence[Migration]) -> None:
    by_version = {m.version: m for m in known}
    newest = max(applied, default=0)
    if newest > latest_version(known):
        raise SchemaError(
            f"database schema version {newest} is newer than this worker's {latest_version(known)}; "
            "upgrade the worker (migrations are forward-only)"
        )
    for version, checksum in applied.items():
        if by_version[version].checksum != checksum:
            raise SchemaError(
                f"migration {version:04d} changed after it was applied; migrations are forward-only"
            )


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The applied version, or None for a database without a `schema_version` table."""
    if not _has_table(conn, "schema_version"):
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def is_empty(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0)


def check_schema(conn: sqlite3.Connection, migrations: Sequence[Migration] | None = None) -> None:
    """Raise SchemaError unless the database is exactly at the latest version, with unchanged migrations."""
    known = bundled_migrations() if migrations is None else _checked(migrations)
    current = schema_version(conn)
    if current is None:
        raise SchemaError(f"database has no schema_version table (not a converse database?); {MIGRATE_HINT}")
    _verify(_applied(conn), known)
    need = latest_version(known)
    if current < need:
        raise SchemaError(f"database schema is at version {current}, worker needs {need}; {MIGRATE_HINT}")


def migrate(
    db: Path | str | sqlite3.Connection, *, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Apply every missing migration; returns the versions applied now (empty if already current)."""
    known = bundled_migrations() if migrations is None else _checked(migrations)
    if isinstance(db, sqlite3.Connection):
        return _migrate(db, known)
    os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))  # a new database is owner-only
    conn = sqlite3.connect(db)
    try:
        return _migrate(conn, known)
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection, known: Sequence[Migration]) -> list[int]:
    saved = conn.isolation_level
    conn.isolation_level = None  # we issue BEGIN/COMMIT ourselves
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _has_table(conn, "schema_version") and not is_empty(conn):
                raise SchemaError("database has tables but no schema_version (not a converse database?)")
            conn.execute(_VERSION_TABLE)
            applied = _applied(conn)
            _verify(applied, known)
            done = []
            for m in known:
                if m.version in applied:
                    continue
                for statement in _statements(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                    (m.version, m.name, m.checksum, format_timestamp(datetime.now(UTC))),
                )
                done.append(m.version)
            conn.execute("COMMIT")
            return done
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.isolation_level = saved


# PostgreSQL -------------------------------------------------------------------------------------------

# pg_advisory_lock key: the first 8 bytes of sha256("converse-worker/migrate") as a signed bigint.
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"converse-worker/migrate").digest()[:8], "big", signed=True)
_PG_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"""


async def _pg_applied(conn: Any) -> dict[int, str] | None:
    """Applied versions and checksums, or None when there is no `schema_version` table."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return None
    return {int(r[0]): str(r[1]) for r in await conn.fetch("SELECT version, checksum FROM schema_version")}


async def pg_is_empty(conn: Any) -> bool:
    """True for a database with no tables of its own in the current schema."""
    n = await conn.fetchval("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()")
    return int(n) == 0


async def check_postgres_schema(conn: Any, migrations: Sequence[Migration] | None = None) -> None:
    """Raise SchemaError unless the PostgreSQL schema is exactly at the latest version (asyncpg `conn`)."""
    known = bundled_postgres_migrations() if migrations is None else _checked(migrations)
    applied = await _pg_applied(conn)
    if applied is None:
        raise SchemaError(f"database has no schema_version table (not a converse database?); {MIGRATE_HINT}")
    _verify(applied, known)
    current, need = max(applied, default=0), latest_version(known)
    if current < need:
        raise SchemaError(f"database schema is at version {current}, worker needs {need}; {MIGRATE_HINT}")


async def migrate_postgres(conn: Any, *, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply every missing PostgreSQL migration on an asyncpg connection; returns the versions applied now.

    Holds a session advisory lock (`PG_LOCK_KEY`) for the duration, so concurrent migrators serialise and
    each migration runs once; each migration commits together with its `schema_version` row.
    """
    known = bundled_postgres_migrations() if migrations is None else _checked(migrations)
    await conn.execute("SELECT pg_advisory_lock($1)", PG_LOCK_KEY)
    try:
        applied = await _pg_applied(conn)
        if applied is None:
            if not await pg_is_empty(conn):
                raise SchemaError("database has tables but no schema_version (not a converse database?)")
            await conn.execute(_PG_VERSION_TABLE)
            applied = {}
        _verify(applied, known)
        done = []
        for m in known:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)  # no arguments: a simple query, so several statements are fine
                await conn.execute(
                    "INSERT INTO schema_version (version, name, checksum, applied_at) "
                    "VALUES ($1, $2, $3, $4)",
                    m.version,
                    m.name,
                    m.checksum,
                    format_timestamp(datetime.now(UTC)),
                )
            done.append(m.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", PG_LOCK_KEY)

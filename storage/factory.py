"""Open the configured stores: the embedded default (SQLite + files under the data directory) or, with
`database_url` / `object_store_url`, the scale-out backend (PostgreSQL + S3)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError
from storage.files import private_dir
from storage.protocols import KeyedTranscriptStore, KeyProvider, RecordingStore, TranscriptStore

DB_NAME = "converse.db"
RECORDINGS_DIR = "recordings"


@dataclass(slots=True)
class Stores:
    transcripts: TranscriptStore
    recordings: RecordingStore

    @property
    def degraded(self) -> bool:
        """True while writes are being spooled because a backend is unreachable (readiness reports it)."""
        return any(bool(getattr(s, "degraded", False)) for s in self._layers())

    @property
    def spooled_bytes(self) -> int:
        """Bytes written to the outage spool since start (a metrics counter)."""
        return sum(int(getattr(s, "spooled_bytes", 0)) for s in self._layers())

    @property
    def spool_backlog_bytes(self) -> int:
        """Bytes in the outage spool not delivered yet (bounded, see storage.spool)."""
        return sum(int(getattr(s, "backlog_bytes", 0)) for s in self._layers())

    @property
    def spool_refused_writes(self) -> int:
        """Writes refused since start because the outage spool was full."""
        return sum(int(getattr(s, "refused_writes", 0)) for s in self._layers())

    def _layers(self) -> list[object]:
        found: list[object] = []
        for store in (self.transcripts, self.recordings):
            layer: object = store
            while layer is not None and len(found) < 16:
                found.append(layer)
                layer = getattr(layer, "inner", None)
        return found

    async def close(self) -> None:
        try:
            await self.recordings.close()
        finally:
            await self.transcripts.close()


async def open_stores(
    data_dir: Path,
    *,
    database_url: str | None = None,
    object_store_url: str | None = None,
    keys: KeyProvider | None = None,
    spool_dir: Path | None = None,
) -> Stores:
    """Open (and schema-check) the stores.

    Embedded (no URLs): the database lives at `<data_dir>/converse.db`, sealed recordings under
    `<data_dir>/recordings/`; both are created owner-only if missing. Scale-out: `database_url`
    (`postgresql://...`) and `object_store_url` (`s3://BUCKET?endpoint=...`), both or neither.

    With `keys`, transcript text is sealed at rest (`storage.sealed_text`). With `spool_dir`, writes that
    find the backend unreachable are spooled there and replayed on recovery (`storage.spool`); the
    transcript spool sits under the sealing layer, so only sealed text is ever spooled.
    """
    if (database_url is None) != (object_store_url is None):
        raise StorageError("the scale-out backend needs both database_url and object_store_url")
    data_dir = Path(data_dir)
    if database_url is not None and object_store_url is not None:
        stores = await _open_scale_out(database_url, object_store_url)
    else:
        stores = await _open_local(data_dir)
    try:
        return await wrap_stores(stores, keys=keys, spool_dir=spool_dir)
    except BaseException:
        await stores.close()
        raise


async def _open_local(data_dir: Path) -> Stores:
    from storage.file_recordings import LocalRecordingStore
    from storage.sql.sqlite import LocalTranscriptStore

    await asyncio.to_thread(private_dir, data_dir)
    transcripts = LocalTranscriptStore(data_dir / DB_NAME)
    try:
        await transcripts.open()
    except BaseException:
        await transcripts.close()
        raise
    return Stores(transcripts, LocalRecordingStore(data_dir / RECORDINGS_DIR))


def missing_extra(exc: ModuleNotFoundError, setting: str) -> StorageError:
    """The one-line error for a scale-out setting on an install without the `scale` extra (a plain
    `pip install .` runs the embedded default only; asyncpg and aiobotocore come with the extra)."""
    missing = f" ({exc.name.split('.')[0]} is missing)" if exc.name else ""
    return StorageError(
        f"{setting} needs the PostgreSQL/S3 backend, which is not installed{missing}:"
        " pip install 'converse-worker[scale]'"
    )


async def _open_scale_out(database_url: str, object_store_url: str) -> Stores:
    try:
        from storage.sql.postgres import PgTranscriptStore
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "CONVERSE_DATABASE_URL") from None
    try:
        from storage.s3_recordings import S3RecordingStore
    except ModuleNotFoundError as exc:  # asyncpg without aiobotocore: a partial install
        raise missing_extra(exc, "CONVERSE_OBJECT_STORE_URL") from None

    recordings = S3RecordingStore(object_store_url)  # parses the URL: a bad one fails before connecting
    transcripts = PgTranscriptStore(database_url)
    try:
        await transcripts.open()
        await recordings.open()
    except BaseException:
        await recordings.close()
        await transcripts.close()
        raise
    return Stores(transcripts, recordings)


async def wrap_stores(
    stores: Stores, *, keys: KeyProvider | None = None, spool_dir: Path | None = None
) -> Stores:
    """Add text sealing and/or outage spooling around opened stores: Sealed(Spooling(store)) for
    transcripts (text is sealed before it can reach the spool), Spooling(store) for recordings (whose bytes
    are sealed SFrame records already). Spooled writes left by an earlier run start draining at once."""
    transcripts: TranscriptStore = stores.transcripts
    recordings: RecordingStore = stores.recordings
    if spool_dir is not None:
        from storage.spool import SpoolingRecordingStore, SpoolingTranscriptStore

        if not isinstance(transcripts, KeyedTranscriptStore):
            raise StorageError("the transcript spool needs a store that keeps call keys")
        spool_dir = Path(spool_dir)
        t_spool = SpoolingTranscriptStore(transcripts, spool_dir / "transcripts")
        r_spool = SpoolingRecordingStore(recordings, spool_dir / "recordings")
        await t_spool.start()  # what an earlier run left starts draining now
        await r_spool.start()
        transcripts, recordings = t_spool, r_spool
    if keys is not None:
        from storage.sealed_text import SealedTranscriptStore

        if not isinstance(transcripts, KeyedTranscriptStore):
            raise StorageError("sealed transcript text needs a store that keeps call keys")
        transcripts = SealedTranscriptStore(transcripts, keys)
    return Stores(transcripts, recordings)


async def migrate_stores(data_dir: Path, *, database_url: str | None = None) -> list[int]:
    """Apply pending schema migrations (`converse-worker migrate`); returns the versions applied."""
    from storage import migrate

    if database_url is not None:
        try:
            from storage.sql.postgres import PgTranscriptStore
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, "CONVERSE_DATABASE_URL") from None
        return await PgTranscriptStore(database_url).migrate()
    data_dir = Path(data_dir)
    await asyncio.to_thread(private_dir, data_dir)
    return await asyncio.to_thread(migrate.migrate, data_dir / DB_NAME)


def memory_stores() -> Stores:
    """In-memory stores for unit tests (see `storage.memory`)."""
    from storage.memory import MemoryRecordingStore, MemoryTranscriptStore

    return Stores(MemoryTranscriptStore(), MemoryRecordingStore())

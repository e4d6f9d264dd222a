"""The behavioural store suite on the embedded (SQLite + files) and in-memory backends, plus what only the
embedded backend has: file permissions, symlink and traversal refusal, schema checks, secure deletion."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from storage import migrate as migrations
from storage.errors import SchemaError, StorageError, StorageUnavailableError
from storage.factory import Stores, memory_stores, migrate_stores, open_stores
from storage.file_recordings import LocalRecordingStore
from storage.memory import MemoryTranscriptStore
from storage.migrate import Migration
from storage.sql.sqlite import LocalTranscriptStore
from tests.storage_contract import Backend, StoreContract, make_call, make_track, make_utt


class TestLocalBackend(StoreContract):
    @pytest.fixture
    def backend(self, data_dir: Path) -> Backend:
        return Backend(lambda: open_stores(data_dir))


class TestMemoryBackend(StoreContract):
    test_flushed_data_survives_reopen = None  # type: ignore[assignment]  # memory keeps nothing across open()

    @pytest.fixture
    def backend(self) -> Backend:
        async def fresh() -> Stores:
            return memory_stores()

        return Backend(fresh)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def names(path: Path, prefix: str = "") -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith(prefix))


@pytest.fixture
def loose_umask() -> object:
    old = os.umask(0)  # the stores must not rely on a strict umask
    yield
    os.umask(old)


async def test_files_and_directories_are_owner_only(data_dir: Path, loose_umask: object) -> None:
    stores = await open_stores(data_dir)
    call = make_call()
    await stores.transcripts.create_call(call)
    sink = await stores.recordings.open_track(call.call_id, 0)
    await sink.append(b"x")
    await sink.close()
    await stores.close()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "recordings") == 0o700
    assert mode(data_dir / "recordings" / call.call_id) == 0o700
    assert mode(data_dir / "recordings" / call.call_id / "0.sfr") == 0o600
    db_files = names(data_dir, "converse.db")
    assert "converse.db" in db_files
    assert {n: mode(data_dir / n) for n in db_files} == dict.fromkeys(db_files, 0o600)


async def test_traversal_ids_never_touch_the_filesystem(tmp_path: Path) -> None:
    rec = LocalRecordingStore(tmp_path / "rec")
    for bad in ("../escape", "..", "a/../../b"):
        with pytest.raises(StorageError, match=r"^invalid call id"):
            await rec.open_track(bad, 0)
    await rec.close()
    assert names(tmp_path) == []


async def test_symlinked_call_directory_or_track_file_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    rec = LocalRecordingStore(tmp_path / "rec")
    (tmp_path / "rec").mkdir()
    os.symlink(outside, tmp_path / "rec" / "c1")
    with pytest.raises(StorageError, match=r"^recording path .*/rec/c1 is not a directory$"):
        await rec.open_track("c1", 0)
    (tmp_path / "rec" / "c2").mkdir()
    os.symlink(outside / "victim", tmp_path / "rec" / "c2" / "0.sfr")
    with pytest.raises(StorageError, match=r"^recording file for call c2 track 0 is a symlink$"):
        await rec.open_track("c2", 0)
    await rec.close()
    assert names(outside) == []


async def test_sqlite_runs_off_the_event_loop(data_dir: Path) -> None:
    store = LocalTranscriptStore(data_dir / "t.db")
    name = await store.db.call(lambda conn: threading.current_thread().name)
    assert name.startswith("converse-sqlite") and name != threading.current_thread().name
    pragmas = await store.db.call(
        lambda conn: [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "synchronous")]
    )
    assert pragmas == ["wal", 2]  # synchronous=FULL
    await store.close()


# schema ---------------------------------------------------------------------------------------------

N = migrations.latest_version()  # the bundled schema version; tests add N + 1
V3 = Migration(N + 1, "add_note", "ALTER TABLE calls ADD COLUMN note TEXT;\n")


def with_v3(monkeypatch: pytest.MonkeyPatch, v3: Migration = V3) -> None:
    bundled = migrations.bundled_migrations()
    monkeypatch.setattr(migrations, "bundled_migrations", lambda: [*bundled, v3])


async def test_new_database_is_migrated_to_latest(data_dir: Path) -> None:
    stores = await open_stores(data_dir)
    await stores.close()
    with sqlite3.connect(data_dir / "converse.db") as conn:
        assert migrations.schema_version(conn) == migrations.latest_version() == N
    assert await migrate_stores(data_dir) == []  # already current


async def test_database_behind_is_refused_until_migrated(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = await open_stores(data_dir)
    call = make_call()
    await stores.transcripts.create_call(call)
    await stores.close()
    with_v3(monkeypatch)
    with pytest.raises(SchemaError) as err:
        await open_stores(data_dir)
    assert (
        str(err.value)
        == f"database schema is at version {N}, worker needs {N + 1}; run `converse-worker migrate`"
    )
    assert await migrate_stores(data_dir) == [N + 1]
    stores = await open_stores(data_dir)
    assert await stores.transcripts.get_call(call.call_id) == call  # data kept across the migration
    await stores.close()


async def test_database_newer_than_the_worker_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_v3(monkeypatch)
    await migrate_stores(data_dir)
    monkeypatch.undo()
    with pytest.raises(
        SchemaError, match=rf"^database schema version {N + 1} is newer than this worker's {N}; upgrade"
    ):
        await open_stores(data_dir)
    with pytest.raises(SchemaError, match=r"newer than this worker"):
        await migrate_stores(data_dir)  # forward-only: nothing to roll back with


async def test_edited_migration_is_refused(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_v3(monkeypatch)
    await migrate_stores(data_dir)
    monkeypatch.undo()
    with_v3(monkeypatch, Migration(N + 1, "add_note", "ALTER TABLE calls ADD COLUMN note2 TEXT;\n"))
    with pytest.raises(SchemaError, match=rf"^migration {N + 1:04d} changed after it was applied"):
        await open_stores(data_dir)


async def test_failed_migration_leaves_the_database_untouched(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await open_stores(data_dir)).close()
    bad = Migration(N + 1, "broken", "CREATE TABLE half (x INTEGER);\nSELECT * FROM no_such_table;\n")
    with_v3(monkeypatch, bad)
    with pytest.raises(sqlite3.OperationalError, match=r"no such table"):
        await migrate_stores(data_dir)
    with sqlite3.connect(data_dir / "converse.db") as conn:
        assert migrations.schema_version(conn) == N
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None


async def test_foreign_database_is_refused(data_dir: Path) -> None:
    os.mkdir(data_dir)
    with sqlite3.connect(data_dir / "converse.db") as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.raises(SchemaError, match=r"no schema_version table"):
        await open_stores(data_dir)


def test_migrations_must_be_numbered_without_gaps() -> None:
    with pytest.raises(SchemaError, match=r"without gaps; found 3 at 2"):
        migrations.latest_version([Migration(1, "a", ""), Migration(3, "c", "")])


def test_two_migrators_apply_each_migration_once(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(migrations.migrate(db))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [[], [], [], list(range(1, N + 1))]


# deletion really erases -----------------------------------------------------------------------------


def disk_bytes(data_dir: Path) -> bytes:
    return b"".join((data_dir / n).read_bytes() for n in names(data_dir, "converse.db"))


async def test_destroyed_key_and_deleted_text_leave_the_disk(data_dir: Path) -> None:
    stores = await open_stores(data_dir)
    call = make_call()
    track = make_track(call.call_id)
    canary = "zebra-canary-7f3a"
    await stores.transcripts.create_call(call)
    await stores.transcripts.put_track(track)
    await stores.transcripts.append_utterance(make_utt(call.call_id, text=f"[NAME] said {canary}"))
    assert track.wrapped_key.blob in disk_bytes(data_dir)
    assert await stores.transcripts.destroy_track_key(call.call_id, 0)
    assert track.wrapped_key.blob not in disk_bytes(data_dir)
    assert canary.encode() in disk_bytes(data_dir)
    assert await stores.transcripts.delete_call(call.call_id)
    assert canary.encode() not in disk_bytes(data_dir)
    await stores.close()


# factory and fakes ----------------------------------------------------------------------------------


async def test_memory_store_fault_injection() -> None:
    store = MemoryTranscriptStore()
    store.fail_next(1)
    with pytest.raises(StorageUnavailableError, match=r"injected failure"):
        await store.list_calls()
    assert await store.list_calls() == []


async def test_key_listing_pages_through_many_tracks(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("storage.checked.KEY_PAGE", 3)
    stores = await open_stores(data_dir)
    for i in range(4):
        await stores.transcripts.create_call(make_call(f"c{i}"))
        for n in range(2):
            await stores.transcripts.put_track(make_track(f"c{i}", n))
    keys = [(k.call_id, k.track) async for k in stores.transcripts.iter_wrapped_keys()]
    assert keys == [(f"c{i}", n) for i in range(4) for n in range(2)]
    await stores.close()


def test_migrate_creates_an_owner_only_database(tmp_path: Path, loose_umask: object) -> None:
    db = tmp_path / "new.db"
    assert migrations.migrate(db) == list(range(1, N + 1))
    assert mode(db) == 0o600

"""The behavioural store suite on the scale-out backend (real PostgreSQL + real SeaweedFS S3), sealed
transcript text on both backends, and two "pods" sharing one database and one bucket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.errors import StorageError, StorageUnavailableError
from storage.factory import migrate_stores, open_stores
from storage.keys import LocalKeyFile
from storage.migrate import bundled_postgres_migrations
from storage.protocols import OrgSettings, format_timestamp
from storage.retention import run_retention
from storage.s3_client import parse_s3_url
from storage.s3_recordings import S3RecordingStore
from storage.sql.postgres import PgTranscriptStore
from tests.servers import PostgresServer, aws_env, own_servers, pg_server, pg_url, s3_server, s3_url
from tests.storage_contract import Backend, StoreContract, make_call, make_track, make_utt

__all__ = ["aws_env", "own_servers", "pg_server", "pg_url", "s3_server", "s3_url"]  # fixtures, re-exported


class TestScaleOutBackend(StoreContract):
    @pytest.fixture
    def backend(self, data_dir: Path, pg_url: str, s3_url: str) -> Backend:
        return Backend(lambda: open_stores(data_dir, database_url=pg_url, object_store_url=s3_url))


class TestScaleOutSealed(StoreContract):
    @pytest.fixture
    def backend(self, data_dir: Path, pg_url: str, s3_url: str, kek_file: Path) -> Backend:
        keys = LocalKeyFile(kek_file)
        return Backend(lambda: open_stores(data_dir, database_url=pg_url, object_store_url=s3_url, keys=keys))


class TestLocalSealed(StoreContract):
    @pytest.fixture
    def backend(self, data_dir: Path, kek_file: Path) -> Backend:
        keys = LocalKeyFile(kek_file)
        return Backend(lambda: open_stores(data_dir, keys=keys))


# factory and URLs -------------------------------------------------------------------------------------


async def test_scale_out_needs_both_urls(data_dir: Path) -> None:
    with pytest.raises(StorageError, match=r"^the scale-out backend needs both database_url and object_"):
        await open_stores(data_dir, database_url="postgresql://127.0.0.1/x")
    with pytest.raises(StorageError, match=r"needs both"):
        await open_stores(data_dir, object_store_url="s3://bucket")


def test_s3_url_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert parse_s3_url("s3://rec?endpoint=http://127.0.0.1:9000") == (
        "rec",
        "http://127.0.0.1:9000",
        "us-east-1",
    )
    assert parse_s3_url("s3://rec?region=eu-west-1") == ("rec", None, "eu-west-1")
    for bad in ("http://rec", "s3://rec/path", "s3://rec?endpoint=ftp://x", "s3://rec?secret=1"):
        with pytest.raises(StorageError):
            parse_s3_url(bad)


async def test_unreachable_servers_raise_unavailable(data_dir: Path, aws_env: None) -> None:
    pg = PgTranscriptStore("postgresql://postgres@127.0.0.1:9/none")
    with pytest.raises(StorageUnavailableError, match=r"^postgresql 127.0.0.1:9/none: "):
        await pg.list_calls()
    await pg.close()
    s3 = S3RecordingStore("s3://rec?endpoint=http://127.0.0.1:9")
    with pytest.raises(StorageUnavailableError, match=r"^s3://rec at http://127.0.0.1:9: "):
        await s3.read_track("c1", 0)
    await s3.close()


async def test_missing_bucket_is_a_clear_error(
    data_dir: Path, pg_url: str, s3_server: object, aws_env: None
) -> None:
    from tests.servers import SeaweedServer

    assert isinstance(s3_server, SeaweedServer)
    with pytest.raises(StorageError, match=r"^bucket nope-missing does not exist"):
        await open_stores(data_dir, database_url=pg_url, object_store_url=s3_server.url_for("nope-missing"))


# schema -----------------------------------------------------------------------------------------------


async def test_postgres_migrate_is_forward_only_and_checked(
    pg_server: PostgresServer, data_dir: Path
) -> None:
    import asyncpg

    admin = await asyncpg.connect(pg_server.url)
    await admin.execute("CREATE DATABASE mig_test")
    await admin.close()
    url = pg_server.url_for("mig_test")
    runs = await asyncio.gather(*(migrate_stores(data_dir, database_url=url) for _ in range(4)))
    everything = [m.version for m in bundled_postgres_migrations()]
    assert sorted(runs) == [[], [], [], everything]  # four pods at once: each migration applied once
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE schema_version SET checksum = 'x' WHERE version = 2")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match=r"^migration 0002 changed after it was applied"):
        await open_stores(data_dir, database_url=url, object_store_url="s3://b?endpoint=http://127.0.0.1:9")


# sealed text at rest ----------------------------------------------------------------------------------

CANARIES = ["zebrastripe one [NAME]", "quokkasmile two 4411", "pangolinscale three"]


async def test_postgres_dump_shows_no_transcript_text(
    pg_server: PostgresServer, pg_url: str, s3_url: str, data_dir: Path, kek_file: Path
) -> None:
    stores = await open_stores(
        data_dir, database_url=pg_url, object_store_url=s3_url, keys=LocalKeyFile(kek_file)
    )
    call = make_call()
    await stores.transcripts.create_call(call)
    for seq, text in enumerate(CANARIES):
        await stores.transcripts.append_utterance(
            make_utt(call.call_id, seq=seq, start=float(seq), text=text, redactions={"[NAME]": 1})
        )
    assert [u.text for u in await stores.transcripts.get_utterances(call.call_id)] == CANARIES
    await stores.close()
    dump = pg_server.dump(pg_url.rsplit("/", 1)[1])
    assert call.call_id.encode() in dump and b"[NAME]" in dump  # metadata is there: ids, redaction counts
    for text in CANARIES:
        for word in text.split()[:1]:
            assert word.encode() not in dump


# two pods ---------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_two_pods_share_records_and_run_retention_together(
    pg_url: str, s3_url: str, tmp_path: Path, kek_file: Path
) -> None:
    keys = LocalKeyFile(kek_file)  # the pods share the KEK (a mounted secret or a KMS in production)
    pods = [
        await open_stores(tmp_path / f"pod{i}", database_url=pg_url, object_store_url=s3_url, keys=keys)
        for i in range(2)
    ]
    old = format_timestamp(NOW - timedelta(days=40))
    ids = []
    for i in range(12):  # each pod takes every other call
        pod = pods[i % 2]
        # Calls 10 and 11 never end and started an hour ago: live, not abandoned; retention keeps them.
        recent = format_timestamp(NOW - timedelta(hours=1))
        call = make_call(f"call{i:02d}", started=old if i < 10 else recent)
        ids.append(call.call_id)
        await pod.transcripts.create_call(call)
        await pod.transcripts.put_track(make_track(call.call_id, 0))
        sink = await pod.recordings.open_track(call.call_id, 0)
        await sink.append(f"sealed-{i}".encode())
        await sink.close()
        await pod.transcripts.append_utterance(make_utt(call.call_id, text=f"words of call {i}"))
        if i < 10:
            await pod.transcripts.end_call(call.call_id, old, "ended", None)
    for i, call_id in enumerate(ids):  # every call readable from the other pod
        other = pods[(i + 1) % 2]
        assert [u.text for u in await other.transcripts.get_utterances(call_id)] == [f"words of call {i}"]
        assert await other.recordings.read_track(call_id, 0) == f"sealed-{i}".encode()
    await pods[0].transcripts.put_settings(OrgSettings("org-a", retention_days=30))
    audited: list[tuple[str, str]] = []

    async def audit(action: str, resource: str, details: dict[str, object]) -> None:
        audited.append((action, resource))

    a, b = await asyncio.gather(
        *(run_retention(p.transcripts, p.recordings, NOW, audit=audit, batch=3) for p in pods)
    )
    assert sorted(a.deleted_calls + b.deleted_calls) == ids[:10]  # each due call deleted exactly once
    assert not set(a.deleted_calls) & set(b.deleted_calls)
    assert a.keys_destroyed + b.keys_destroyed == 10
    assert a.text_keys_destroyed + b.text_keys_destroyed == 10
    assert a.failed == b.failed == {}
    assert sorted(r for act, r in audited if act == "retention.call_deleted") == [
        f"call:{c}" for c in ids[:10]
    ]
    for pod in pods:
        assert [c.call_id for c in await pod.transcripts.list_calls()] == ids[10:]
        with pytest.raises(StorageError):
            await pod.recordings.read_track(ids[0], 0)
    for pod in pods:
        await pod.close()

"""storage.audit_pg.PgAuditLog on a real PostgreSQL and a real SeaweedFS: one chain across writers, triggers
that refuse changes, checkpoints as Object-Locked objects, and `verify` naming each tampering.

The attacker here is a database superuser (DROP TRIGGER, then UPDATE/DELETE/INSERT/TRUNCATE) with the S3
credentials, but without the signing key.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from storage import audit
from storage.audit import Actor, AuditTamperedError
from storage.audit_pg import TRIGGERS, PgAuditLog
from storage.audit_sinks import CHECKPOINT_PREFIX, S3CheckpointSink, checkpoint_key
from storage.audit_store import AuditLog
from tests.servers import ACCESS_KEY, SECRET_KEY, SeaweedServer, new_bucket

ADMIN = Actor("u-admin", "admin@example.org", "10.0.0.7", "admin", "org1")
TRIGGERS_MISSING = "append-only triggers were missing: " + ", ".join(sorted(TRIGGERS))
ROOTS_BROKEN = [
    "checkpoint 1: root hash does not match the first 6 entries",
    "checkpoint 2: root hash does not match the first 9 entries",
]


def s3_client(server: SeaweedServer) -> Any:
    return get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


async def locked_bucket(server: SeaweedServer) -> str:
    """A fresh bucket created with Object Lock enabled (versioning on); returns its `s3://` URL."""
    name = f"lk-{secrets.token_hex(6)}"
    async with s3_client(server) as s3:
        await s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return server.url_for(name)


@pytest.fixture
async def lock_url(s3_server: SeaweedServer, aws_env: None) -> str:
    return await locked_bucket(s3_server)


def open_log(pg_url: str, bucket_url: str | None, tmp_path: Path) -> PgAuditLog:
    return PgAuditLog.for_urls(
        pg_url, bucket_url, data_dir=tmp_path / "data", key_path=tmp_path / "keys" / "audit-signing.key"
    )


async def fill(log: PgAuditLog) -> None:
    """Entries 1-6, checkpoint 1 (6 entries; entry 7 records it), 8-9, checkpoint 2 (9; entry 10), 11."""
    for n in range(1, 7):
        outcome = "denied" if n == 3 else "ok"
        await log.append(
            ADMIN, "settings.update", f"setting:{n}", outcome, before={"n": n - 1}, after={"n": n}
        )
    await log.checkpoint()
    for n in (8, 9):
        await log.append(ADMIN, "transcripts.read", f"call:c{n}", "allowed")
    await log.checkpoint()
    await log.append(ADMIN, "calls.list", "org:org1", "allowed")


@pytest.fixture
async def filled(pg_url: str, lock_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str, Path]]:
    log = open_log(pg_url, lock_url, tmp_path)
    await fill(log)
    assert await log.verify() == []
    await log.close()
    yield pg_url, lock_url, tmp_path


async def findings(where: tuple[str, str, Path]) -> list[str]:
    log = open_log(*where)
    try:
        return [str(f) for f in await log.verify()]
    finally:
        await log.close()


async def attack(pg_url: str, *statements: str, params: tuple[object, ...] = ()) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for trigger in TRIGGERS:
            await conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON audit_log")
        for sql in statements:
            await conn.execute(sql, *(params if "$1" in sql else ()))
    finally:
        await conn.close()


async def rehash_from(pg_url: str, first: int) -> None:
    """What a careful attacker does after editing entry `first`: recompute every stored hash after it."""
    conn = await asyncpg.connect(pg_url)
    try:
        prev = bytes.fromhex(
            await conn.fetchval("SELECT chain_hash FROM audit_log WHERE seq = $1", first - 1)
        )
        for seq, entry in await conn.fetch(
            "SELECT seq, entry FROM audit_log WHERE seq >= $1 ORDER BY seq", first
        ):
            leaf = audit.leaf_hash(entry.encode())
            prev = audit.chain_hash(prev, leaf)
            await conn.execute(
                "UPDATE audit_log SET leaf_hash = $1, chain_hash = $2 WHERE seq = $3",
                leaf.hex(),
                prev.hex(),
                seq,
            )
    finally:
        await conn.close()


# -- one chain, several writers ---------------------------------------------------------------------------


async def test_two_pods_append_into_one_chain(pg_url: str, lock_url: str, tmp_path: Path) -> None:
    """Two logs (two pods) append and checkpoint at once; one gap-free chain and one checkpoint sequence."""
    a, b = open_log(pg_url, lock_url, tmp_path), open_log(pg_url, lock_url, tmp_path)

    async def writer(log: PgAuditLog, name: str) -> None:
        for i in range(25):
            await log.append(ADMIN, "calls.list", f"org:{name}{i}", "ok")
            if i % 10 == 9:
                await log.checkpoint()

    await asyncio.gather(writer(a, "a"), writer(b, "b"))
    await asyncio.gather(a.checkpoint(), b.checkpoint())
    rows = await a.entries(limit=1000)
    assert [e["seq"] for e in rows] == list(range(1, len(rows) + 1))
    assert len([e for e in rows if e["action"] == "calls.list"]) == 50
    assert {e["resource"][4] for e in rows if e["action"] == "calls.list"} == {"a", "b"}
    assert await a.verify() == [] and await b.verify() == []
    cps = [audit.parse_checkpoint(line) for line in (await a.sink.read()).lines]
    assert [cp["seq"] for cp in cps] == list(range(1, 7))
    assert cps[-1]["tree_size"] >= len(rows) - 2  # all but the records of the last two checkpoints
    proof = await b.inclusion_proof(3)
    assert proof.verify() and proof.checkpoint == 6
    await a.close()
    await b.close()


async def test_maybe_checkpoint_is_decided_once_across_pods(
    pg_url: str, lock_url: str, tmp_path: Path
) -> None:
    a, b = open_log(pg_url, lock_url, tmp_path), open_log(pg_url, lock_url, tmp_path)
    for _ in range(5):
        await a.append(ADMIN, "calls.list", "org:org1", "allowed")
    done = await asyncio.gather(*(log.maybe_checkpoint(every_n=5, every_s=60, now=0) for log in (a, b)))
    assert sorted(cp is not None for cp in done) == [False, True]
    # Only the checkpoint's own record since: no new checkpoint, however long it has been.
    assert await b.maybe_checkpoint(every_n=5, every_s=60, now=1e9) is None
    await b.append(ADMIN, "calls.list", "org:org1", "allowed")
    cp = await a.maybe_checkpoint(every_n=5, every_s=60, now=1e9)
    assert cp is not None and (cp["seq"], cp["tree_size"]) == (2, 7)
    assert await a.verify() == []
    await a.close()
    await b.close()


# -- the database refuses changes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET entry = '{}' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 11",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "INSERT INTO audit_log VALUES (3, 't', '{}', 'a', 'b') ON CONFLICT (seq) DO UPDATE SET entry = '{}'",
        "INSERT INTO audit_log VALUES (20, 't', '{}', 'aa', 'bb')",
    ],
)
async def test_triggers_refuse_changes(filled: tuple[str, str, Path], sql: str) -> None:
    conn = await asyncpg.connect(filled[0])
    try:
        with pytest.raises(
            asyncpg.exceptions.InsufficientPrivilegeError, match=r"^audit log is append-only: "
        ):
            await conn.execute(sql)
    finally:
        await conn.close()
    assert await findings(filled) == []


async def test_dropped_triggers_are_reported(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0])
    assert await findings(filled) == [TRIGGERS_MISSING]
    conn = await asyncpg.connect(filled[0])
    await conn.execute(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()"
    )
    await conn.close()
    assert await findings(filled) == [
        "append-only triggers were missing: audit_log_append_only, audit_log_no_delete, audit_log_no_truncate"
    ]


# -- tampering, each named ---------------------------------------------------------------------------------

MODIFY_3 = (
    """UPDATE audit_log SET entry = replace(entry, '"outcome":"denied"', '"outcome":"ok"') WHERE seq = 3"""
)


async def test_modified_field_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], MODIFY_3)
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 3: modified (does not match checkpoint 1)",
        *ROOTS_BROKEN,
    ]


async def test_modified_field_with_rewritten_hashes_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], MODIFY_3)
    await rehash_from(filled[0], 3)
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 3: modified (does not match checkpoint 1)",
        *ROOTS_BROKEN,
    ]


async def test_modified_entry_after_last_checkpoint_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(
        filled[0], "UPDATE audit_log SET entry = replace(entry, 'calls.list', 'calls.lost') WHERE seq = 11"
    )
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 11: modified (does not match its recorded leaf hash)",
    ]


async def test_deleted_entry_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], "DELETE FROM audit_log WHERE seq = 4")
    assert await findings(filled) == [TRIGGERS_MISSING, "entry 4: removed", *ROOTS_BROKEN]


async def test_swapped_entries_are_named(filled: tuple[str, str, Path]) -> None:
    await attack(
        filled[0],
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 2: reordered (found where entry 3 belongs)",
        "entry 3: reordered (found where entry 2 belongs)",
        *ROOTS_BROKEN,
    ]


async def test_inserted_forged_entry_is_named(filled: tuple[str, str, Path]) -> None:
    """A forged copy of entry 5 slipped in before it, the later rows renumbered and the chain recomputed."""
    conn = await asyncpg.connect(filled[0])
    genuine = await conn.fetchval("SELECT entry FROM audit_log WHERE seq = 5")
    await conn.close()
    forged = genuine.replace('"outcome":"ok"', '"outcome":"denied"')
    await attack(
        filled[0],
        "UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= 5",
        "UPDATE audit_log SET seq = -seq WHERE seq < 0",
        "INSERT INTO audit_log VALUES (5, 't', $1, '', '')",
        params=(forged,),
    )
    await rehash_from(filled[0], 5)
    assert await findings(filled) == [TRIGGERS_MISSING, "entry 5: inserted (duplicate seq)", *ROOTS_BROKEN]


async def test_truncated_tail_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], "DELETE FROM audit_log WHERE seq > 7")
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "log truncated: entries 8..9 missing behind checkpoint 2",
    ]


async def test_truncated_table_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], "TRUNCATE audit_log")
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "log truncated: entries 1..9 missing behind checkpoint 2",
    ]


async def test_dropped_table_is_named(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], "DROP TABLE audit_log")
    assert await findings(filled) == [
        "the audit_log table is missing",
        TRIGGERS_MISSING,
        "log truncated: entries 1..9 missing behind checkpoint 2",
    ]


async def test_checkpoint_refuses_a_tampered_log(filled: tuple[str, str, Path]) -> None:
    await attack(filled[0], "DELETE FROM audit_log WHERE seq > 7")
    log = open_log(*filled)
    with pytest.raises(AuditTamperedError, match=r"^the log has 7 entries, behind checkpoint 2$"):
        await log.checkpoint()
    await log.close()


async def test_checkpoint_refuses_a_rewritten_prefix(filled: tuple[str, str, Path]) -> None:
    await attack(
        filled[0], "UPDATE audit_log SET entry = replace(entry, 'setting:2', 'setting:X') WHERE seq = 2"
    )
    log = open_log(*filled)
    with pytest.raises(AuditTamperedError, match=r"^the log no longer matches checkpoint 2$"):
        await log.checkpoint()
    await log.close()


# -- checkpoints outside the database ----------------------------------------------------------------------


def _bucket(url: str) -> str:
    return url.split("//", 1)[1].split("?", 1)[0]


async def test_checkpoint_objects_are_locked(filled: tuple[str, str, Path], s3_server: SeaweedServer) -> None:
    """The S3 server itself refuses to delete a checkpoint version; hiding it or overwriting it is named."""
    bucket = _bucket(filled[1])
    key = checkpoint_key(1)
    async with s3_client(s3_server) as s3:
        head = await s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        with pytest.raises(ClientError) as refused:
            await s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError):
            await s3.delete_object(
                Bucket=bucket, Key=key, VersionId=head["VersionId"], BypassGovernanceRetention=True
            )
        await s3.delete_object(Bucket=bucket, Key=key)  # only a delete marker: the version stays
        await s3.put_object(Bucket=bucket, Key=checkpoint_key(2), Body=b'{"forged": true}')
    assert await findings(filled) == [
        f"checkpoint 1: its object {key} was overwritten or deleted (1 delete marker(s))",
        f"checkpoint 2: its object {checkpoint_key(2)} was overwritten or deleted (1 other version(s))",
    ]


async def test_unlocked_bucket_falls_back_and_says_so(
    pg_url: str, s3_server: SeaweedServer, aws_env: None, tmp_path: Path
) -> None:
    plain = await new_bucket(s3_server)
    log = open_log(pg_url, plain, tmp_path)
    await fill(log)
    assert await log.verify() == []
    assert len(log.notes) == 1 and "has no Object Lock" in log.notes[0]
    async with s3_client(s3_server) as s3:
        listed = await s3.list_objects_v2(Bucket=_bucket(plain), Prefix=CHECKPOINT_PREFIX)
        assert [o["Key"] for o in listed["Contents"]] == [checkpoint_key(1), checkpoint_key(2)]
        await s3.delete_object(Bucket=_bucket(plain), Key=checkpoint_key(2))  # unprotected: it goes
    assert [str(f) for f in await log.verify()] == ["checkpoint 2: missing (recorded by entry 10)"]
    await log.close()


async def test_file_sink_without_an_object_store(pg_url: str, tmp_path: Path) -> None:
    log = open_log(pg_url, None, tmp_path)
    await fill(log)
    assert await log.verify() == [] and log.notes == []
    lines = (tmp_path / "data" / "audit-checkpoints.jsonl").read_text().splitlines()
    assert [audit.parse_checkpoint(line)["tree_size"] for line in lines] == [6, 9]
    await log.close()


async def test_same_entries_as_the_embedded_log(pg_url: str, lock_url: str, tmp_path: Path) -> None:
    """Both backends hash the same way: the same entries give the same leaves and roots."""
    pg = open_log(pg_url, lock_url, tmp_path)
    local = AuditLog.in_data_dir(tmp_path / "local", key_path=tmp_path / "keys" / "audit-signing.key")
    for log in (pg, local):
        await log.append(ADMIN, "calls.list", "org:org1", "allowed")
    pg_entry, local_entry = (await pg.entries())[0], (await local.entries())[0]
    assert {k: v for k, v in pg_entry.items() if k != "ts"} == {
        k: v for k, v in local_entry.items() if k != "ts"
    }
    await pg.close()
    await local.close()


async def test_open_security_chooses_postgres(pg_url: str, lock_url: str, tmp_path: Path) -> None:
    from worker.auth.security import open_security

    sec = open_security(
        tmp_path / "data", tmp_path / "keys" / "kek.json", database_url=pg_url, object_store_url=lock_url
    )
    try:
        assert isinstance(sec.audit, PgAuditLog) and isinstance(sec.audit.sink, S3CheckpointSink)
        await sec.audit.record_system("retention.run", "retention", {"deleted": 0})
        assert (await sec.audit.entries())[0]["action"] == "retention.run"
    finally:
        await sec.close()

"""Transcript text sealed at rest: raw database bytes hold no utterance text, tampering is detected with
the call/track/seq named, destroyed keys make text unreadable, and retention shreds the text key first."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.errors import KeyDestroyedError
from storage.factory import Stores, open_stores
from storage.keys import LocalKeyFile
from storage.protocols import OrgSettings
from storage.retention import run_retention
from storage.sealed_text import SealedTextError, SealedTranscriptStore, is_sealed, seal_text, unseal_text
from tests.servers import aws_env, pg_server, pg_url, s3_server, s3_url
from tests.storage_contract import make_call, make_track, make_utt

__all__ = ["aws_env", "pg_server", "pg_url", "s3_server", "s3_url"]  # fixtures, re-exported


TEXTS = [
    "zebrastripe ate [NAME]'s lunch",
    "quokkasmile number [PHONE] please",
    "pangolinscale dosage at noon",
]
CANARIES = [b"zebrastripe", b"quokkasmile", b"pangolinscale", b"lunch", b"dosage"]
KEY = bytes(range(32))


def test_seal_round_trip_and_binding() -> None:
    sealed = seal_text(KEY, "c1", 0, 3, "hello")
    assert is_sealed(sealed) and "hello" not in sealed
    assert seal_text(KEY, "c1", 0, 3, "hello") == sealed  # deterministic: identical retries stay identical
    assert unseal_text(KEY, "c1", 0, 3, sealed) == "hello"
    for call_id, track, seq in (("c2", 0, 3), ("c1", 1, 3), ("c1", 0, 4)):
        with pytest.raises(SealedTextError, match=rf"^utterance {call_id}/{track}/{seq}: sealed text failed"):
            unseal_text(KEY, call_id, track, seq, sealed)
    with pytest.raises(SealedTextError, match=r"^utterance c1/0/3: stored text is not sealed$"):
        unseal_text(KEY, "c1", 0, 3, "hello")
    with pytest.raises(SealedTextError, match=r"^utterance c1/0/3: sealed text is not valid base64$"):
        unseal_text(KEY, "c1", 0, 3, "s1:***")


async def sealed_local(data_dir: Path, kek_file: Path) -> Stores:
    return await open_stores(data_dir, keys=LocalKeyFile(kek_file))


async def write_call(stores: Stores) -> str:
    call = make_call()
    await stores.transcripts.create_call(call)
    await stores.transcripts.put_track(make_track(call.call_id))
    for seq, text in enumerate(TEXTS):
        utt = make_utt(call.call_id, seq=seq, start=float(seq), text=text, redactions={"[NAME]": 1})
        await stores.transcripts.append_utterance(utt)
        await stores.transcripts.append_utterance(utt)  # an identical retry is accepted
    return call.call_id


def db_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("converse.db*")))


async def test_sqlite_file_holds_no_transcript_text(data_dir: Path, kek_file: Path) -> None:
    stores = await sealed_local(data_dir, kek_file)
    call_id = await write_call(stores)
    assert [u.text for u in await stores.transcripts.get_utterances(call_id)] == TEXTS
    await stores.close()
    raw = db_bytes(data_dir)
    assert call_id.encode() in raw and b"[NAME]" in raw  # metadata stays readable
    assert [c for c in CANARIES if c in raw] == []
    stores = await sealed_local(data_dir, kek_file)  # another process with the same KEK reads it back
    assert [u.text for u in await stores.transcripts.get_utterances(call_id)] == TEXTS
    await stores.close()


async def test_tampered_sqlite_text_fails_naming_the_utterance(data_dir: Path, kek_file: Path) -> None:
    stores = await sealed_local(data_dir, kek_file)
    call_id = await write_call(stores)
    with sqlite3.connect(data_dir / "converse.db") as conn:  # move seq 0's sealed text onto seq 1
        (sealed0,) = conn.execute("SELECT text FROM utterances WHERE seq = 0").fetchone()
        conn.execute("UPDATE utterances SET text = ? WHERE seq = 1", (sealed0,))
    conn.close()
    with pytest.raises(
        SealedTextError, match=rf"^utterance {call_id}/0/1: sealed text failed authentication"
    ):
        await stores.transcripts.get_utterances(call_id)
    await stores.close()


async def test_tampered_postgres_text_fails_naming_the_utterance(
    data_dir: Path, kek_file: Path, pg_url: str, s3_url: str
) -> None:
    import asyncpg

    stores = await open_stores(
        data_dir, database_url=pg_url, object_store_url=s3_url, keys=LocalKeyFile(kek_file)
    )
    call_id = await write_call(stores)
    conn = await asyncpg.connect(pg_url)
    try:  # flip one base64 character of seq 2
        await conn.execute(
            "UPDATE utterances SET text = overlay(text placing (CASE WHEN substr(text, 10, 1) = 'A' THEN 'B' "
            "ELSE 'A' END) from 10 for 1) WHERE seq = 2"
        )
        rows = await conn.fetch("SELECT * FROM utterances")
    finally:
        await conn.close()
    as_text = repr([tuple(r) for r in rows]).encode()  # SELECT * as text: metadata only
    assert call_id.encode() in as_text and [c for c in CANARIES if c in as_text] == []
    with pytest.raises(
        SealedTextError, match=rf"^utterance {call_id}/0/2: sealed text failed authentication"
    ):
        await stores.transcripts.get_utterances(call_id)
    await stores.close()


async def test_destroyed_text_key_makes_text_unreadable(data_dir: Path, kek_file: Path) -> None:
    stores = await sealed_local(data_dir, kek_file)
    call_id = await write_call(stores)
    sealed = stores.transcripts
    assert isinstance(sealed, SealedTranscriptStore)
    assert await sealed.destroy_call_key(call_id)
    assert not await sealed.destroy_call_key(call_id)
    with pytest.raises(KeyDestroyedError, match=rf"^call {call_id}: transcript text key was destroyed$"):
        await sealed.get_utterances(call_id)
    with pytest.raises(KeyDestroyedError):  # and nothing new can be sealed for it either
        await sealed.append_utterance(make_utt(call_id, seq=9, text="late"))
    await stores.close()


async def test_create_call_retry_keeps_the_key_and_a_pre_sealing_call_gets_one(
    data_dir: Path, kek_file: Path
) -> None:
    plain = await open_stores(data_dir)
    call = make_call()
    await plain.transcripts.create_call(call)  # created without sealing (e.g. before an upgrade)
    await plain.close()
    stores = await sealed_local(data_dir, kek_file)
    sealed = stores.transcripts
    assert isinstance(sealed, SealedTranscriptStore)
    assert await sealed.get_call_key(call.call_id) is None
    await sealed.append_utterance(make_utt(call.call_id, text="first words"))
    key = await sealed.get_call_key(call.call_id)
    assert key is not None and key.blob
    await sealed.create_call(call)
    assert await sealed.get_call_key(call.call_id) == key
    assert [u.text for u in await sealed.get_utterances(call.call_id)] == ["first words"]
    await stores.close()


async def test_retention_destroys_the_text_key_first(data_dir: Path, kek_file: Path) -> None:
    stores = await sealed_local(data_dir, kek_file)
    call = make_call(started="2025-01-01T00:00:00.000Z")
    await stores.transcripts.create_call(call)
    await stores.transcripts.put_track(make_track(call.call_id))
    await stores.transcripts.append_utterance(make_utt(call.call_id, text="old words"))
    await stores.transcripts.end_call(call.call_id, "2025-01-01T01:00:00.000Z", "ended", None)
    await stores.transcripts.put_settings(OrgSettings("org-a", retention_days=30))
    actions: list[str] = []

    async def audit(action: str, resource: str, details: dict[str, object]) -> None:
        actions.append(action)

    now = datetime(2026, 1, 1, tzinfo=UTC)
    report = await run_retention(stores.transcripts, stores.recordings, now, audit=audit)
    assert report.text_keys_destroyed == 1 and report.keys_destroyed == 1
    assert actions == ["retention.text_key_destroyed", "retention.key_destroyed", "retention.call_deleted"]
    await stores.close()
    assert b"old words" not in db_bytes(data_dir)

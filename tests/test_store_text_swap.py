"""`replace_utterance_text`, the compare-and-set a migration uses to re-seal text stored under an old sealing
format, on the in-memory fake, real SQLite and real PostgreSQL: it swaps the text of exactly one stored
utterance, only while that text is still what the caller read, and can change nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from storage.errors import InvalidIdError, StorageError
from storage.keys import LocalKeyFile
from storage.memory import MemoryTranscriptStore
from storage.protocols import KeyedTranscriptStore, UtteranceRecord
from storage.sealed_text import SealedTranscriptStore
from storage.sql.postgres import PgTranscriptStore
from storage.sql.sqlite import LocalTranscriptStore
from tests.servers import new_database, pg_server
from tests.storage_contract import make_call, make_track, make_utt

__all__ = ["pg_server"]  # a fixture, re-exported

Store = MemoryTranscriptStore | LocalTranscriptStore | PgTranscriptStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryTranscriptStore()
    elif request.param == "sqlite":
        s = LocalTranscriptStore(tmp_path / "converse.db")
    else:
        s = PgTranscriptStore(await new_database(request.getfixturevalue("pg_server")))
    yield s
    await s.close()


async def planted(store: Store, call_id: str = "c1") -> list[UtteranceRecord]:
    await store.create_call(make_call(call_id))
    await store.put_track(make_track(call_id, 0))
    utts = [
        make_utt(call_id, 0, 0, 0.0, text="s0:old zero", redactions={"[NAME]": 1}),
        make_utt(call_id, 0, 1, 2.0, text="s0:old one"),
        make_utt(call_id, 1, 0, 1.0, text="s0:old zero"),  # same text, other track
    ]
    for u in utts:
        await store.append_utterance(u)
    return await store.get_utterances(call_id)


async def test_swaps_only_that_rows_text_when_it_is_still_expected(store: Store) -> None:
    before = await planted(store)
    other = await planted(store, "c2")
    track = await store.get_track("c1", 0)
    assert await store.replace_utterance_text("c1", 0, 0, expected="s0:old zero", text="s2:new zero")
    after = await store.get_utterances("c1")
    assert after == [replace(before[0], text="s2:new zero"), *before[1:]]  # times, counts, order kept
    assert await store.get_utterances("c2") == other
    assert await store.get_track("c1", 0) == track
    assert (await store.get_call("c1")).status == "active"


async def test_a_stale_expected_text_changes_nothing(store: Store) -> None:
    before = await planted(store)
    assert not await store.replace_utterance_text("c1", 0, 0, expected="s0:old one", text="s2:x")
    assert not await store.replace_utterance_text(
        "c1", 0, 0, expected="s0:old", text="s2:x"
    )  # no prefix match
    assert await store.replace_utterance_text("c1", 0, 0, expected="s0:old zero", text="s2:y")
    assert not await store.replace_utterance_text("c1", 0, 0, expected="s0:old zero", text="s2:z")  # done
    assert [u.text for u in await store.get_utterances("c1")] == ["s2:y", "s0:old zero", "s0:old one"]
    assert before[1:] == (await store.get_utterances("c1"))[1:]


async def test_never_creates_a_row(store: Store) -> None:
    await planted(store)
    for call_id, track, seq in (("c1", 0, 7), ("c1", 5, 0), ("nope", 0, 0)):
        assert not await store.replace_utterance_text(
            call_id, track, seq, expected="s0:old zero", text="s2:x"
        )
    assert len(await store.get_utterances("c1")) == 3
    assert [c.call_id for c in await store.list_calls()] == ["c1"]


async def test_bad_arguments_are_refused_before_any_query(store: Store) -> None:
    await planted(store)
    with pytest.raises(InvalidIdError, match=r"^invalid call id"):
        await store.replace_utterance_text("../c1", 0, 0, expected="s0:old zero", text="s2:x")
    with pytest.raises(InvalidIdError, match=r"^invalid track number"):
        await store.replace_utterance_text("c1", -1, 0, expected="s0:old zero", text="s2:x")
    with pytest.raises(ValueError, match=r"^seq must be an int >= 0"):
        await store.replace_utterance_text("c1", 0, -1, expected="s0:old zero", text="s2:x")
    with pytest.raises(
        ValueError, match=r"^replace_utterance_text takes the expected and the new text as str$"
    ):
        await store.replace_utterance_text("c1", 0, 0, expected="s0:old zero", text=None)  # type: ignore[arg-type]
    assert (await store.get_utterances("c1"))[0].text == "s0:old zero"


async def test_concurrent_swaps_from_one_text_let_exactly_one_win(store: Store) -> None:
    await planted(store)
    wins = await asyncio.gather(
        *(store.replace_utterance_text("c1", 0, 1, expected="s0:old one", text=f"s2:{i}") for i in range(8))
    )
    assert sum(wins) == 1
    (winner,) = [i for i, won in enumerate(wins) if won]
    assert (await store.get_utterances("c1"))[2].text == f"s2:{winner}"


async def test_the_sealing_layer_refuses_it(tmp_path: Path, kek_file: Path) -> None:
    inner = LocalTranscriptStore(tmp_path / "converse.db")
    sealed = SealedTranscriptStore(inner, LocalKeyFile(kek_file))
    await sealed.create_call(make_call("c1"))
    await sealed.append_utterance(make_utt("c1", text="words"))
    (raw,) = await inner.get_utterances("c1")
    with pytest.raises(StorageError, match=r"^stored text is not replaced through the sealing layer$"):
        await sealed.replace_utterance_text("c1", 0, 0, expected=raw.text, text="plain words")
    assert await inner.get_utterances("c1") == [raw]
    assert [u.text for u in await sealed.get_utterances("c1")] == ["words"]
    await sealed.close()


def test_every_keyed_backend_has_it() -> None:
    assert issubclass(LocalTranscriptStore, KeyedTranscriptStore)
    assert issubclass(PgTranscriptStore, KeyedTranscriptStore)


async def test_sqlite_row_keeps_every_other_column(tmp_path: Path) -> None:
    store = LocalTranscriptStore(tmp_path / "converse.db")
    await planted(store)
    await store.close()
    before = raw_rows(tmp_path / "converse.db")
    store = LocalTranscriptStore(tmp_path / "converse.db")
    assert await store.replace_utterance_text("c1", 0, 0, expected="s0:old zero", text="s2:new")
    await store.close()
    after = raw_rows(tmp_path / "converse.db")
    text_at = 5
    assert [r[:text_at] + r[text_at + 1 :] for r in after] == [r[:text_at] + r[text_at + 1 :] for r in before]
    assert [r[text_at] for r in after] == ["s2:new", "s0:old one", "s0:old zero"]


def raw_rows(db: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT * FROM utterances ORDER BY call_id, track, seq").fetchall()

"""Outage spool: writes that find the store down are spooled (sealed) on local disk and replayed in order."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from storage.errors import NotFoundError, StorageUnavailableError
from storage.factory import Stores
from storage.keys import LocalKeyFile
from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
from storage.protocols import CallKey, WrappedKey
from storage.sealed_text import SealedTranscriptStore
from storage.spool import (
    SpoolFullError,
    SpoolingRecordingStore,
    SpoolingTranscriptStore,
    append_records,
    read_records,
)
from tests.storage_contract import T0, make_call, make_track, make_utt

FAST: dict[str, Any] = {"retry_initial": 0.01, "retry_max": 0.05}


class KeyedMemoryStore(MemoryTranscriptStore):
    """The in-memory fake plus call text keys and an outage switch (`down`)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.call_keys: dict[str, WrappedKey] = {}

    def check(self, what: str) -> None:
        if self.down:
            raise StorageUnavailableError("database down")
        super().check(what)

    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        self._op()
        self._need_call(call_id)
        if call_id in self.call_keys:
            return False
        self.call_keys[call_id] = wrapped
        return True

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        self._op()
        self._need_call(call_id)
        return self.call_keys.get(call_id)

    async def destroy_call_key(self, call_id: str) -> bool:
        self._op()
        key = self.call_keys.get(call_id)
        if key is None or not key.blob:
            return False
        self.call_keys[call_id] = WrappedKey(key.kek_id, key.kek_version, b"")
        return True

    async def iter_call_keys(self) -> AsyncIterator[CallKey]:
        for call_id in sorted(self.call_keys):
            if self.call_keys[call_id].blob:
                yield CallKey(call_id, self.call_keys[call_id])

    async def replace_call_key(self, call_id: str, wrapped: WrappedKey, *, expected: WrappedKey) -> bool:
        if self.call_keys.get(call_id) != expected or not expected.blob:
            return False
        self.call_keys[call_id] = wrapped
        return True


class FlakyRecordings(MemoryRecordingStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def check(self, what: str) -> None:
        if self.down:
            raise StorageUnavailableError("object store down")
        super().check(what)


async def settle(*stores: SpoolingTranscriptStore | SpoolingRecordingStore) -> None:
    """Wait (up to 5 s) until the drain tasks have delivered everything."""
    async with asyncio.timeout(5.0):
        while any(s.degraded for s in stores):  # noqa: ASYNC110  # polls a property; no event to wait on
            await asyncio.sleep(0.01)


def spool_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def inner() -> KeyedMemoryStore:
    return KeyedMemoryStore()


async def test_utterances_and_counts_spool_during_an_outage_and_replay_in_order(
    inner: KeyedMemoryStore, tmp_path: Path, kek_file: Path
) -> None:
    spool = SpoolingTranscriptStore(inner, tmp_path / "spool", **FAST)
    store = SealedTranscriptStore(spool, LocalKeyFile(kek_file))
    await spool.start()
    call = make_call()
    await store.create_call(call)
    await store.put_track(make_track(call.call_id))
    await store.append_utterance(make_utt(call.call_id, seq=0, start=0.0, text="before the outage"))
    assert not spool.degraded and spool.spooled_bytes == 0

    inner.down = True
    for seq in range(1, 6):
        await store.append_utterance(make_utt(call.call_id, seq=seq, start=float(seq), text=f"during {seq}"))
        await store.update_track_counts(
            call.call_id, 0, received=seq * 50, sealed=seq * 50, lost=0, duration_s=seq
        )
    await store.end_call(call.call_id, T0, "ended", "hangup")
    assert spool.degraded and spool.pending == 11 and spool.spooled_bytes > 0
    spool_file = tmp_path / "spool" / "transcripts.spool"
    assert mode(tmp_path / "spool") == 0o700 and mode(spool_file) == 0o600
    raw = spool_bytes(tmp_path / "spool")
    assert b"during" not in raw  # only sealed text reaches the disk

    inner.down = False
    await settle(spool)
    texts = [u.text for u in await store.get_utterances(call.call_id)]
    assert texts == ["before the outage"] + [f"during {n}" for n in range(1, 6)]
    track = await store.get_track(call.call_id, 0)
    assert (track.frames_received, track.duration_s) == (250, 5.0)  # the last counts win: order kept
    assert (await store.get_call(call.call_id)).end_reason == "hangup"
    assert not spool_file.exists()
    await store.close()


async def test_unsealed_text_is_never_spooled(inner: KeyedMemoryStore, tmp_path: Path) -> None:
    spool = SpoolingTranscriptStore(inner, tmp_path / "spool", **FAST)
    call = make_call()
    await spool.create_call(call)
    inner.down = True
    with pytest.raises(StorageUnavailableError, match=r"not spooled: utterance text is not sealed"):
        await spool.append_utterance(make_utt(call.call_id, text="plain words"))
    await spool.update_track_counts(call.call_id, 0, received=1, sealed=1, lost=0, duration_s=0.02)
    with pytest.raises(StorageUnavailableError, match=r"unsealed utterance text is never spooled"):
        await spool.append_utterance(make_utt(call.call_id, seq=1, text="plain words"))
    assert b"plain" not in spool_bytes(tmp_path / "spool")
    inner.down = False
    await spool.close()


async def test_a_spool_left_by_a_stopped_pod_is_replayed_on_start(
    inner: KeyedMemoryStore, tmp_path: Path, kek_file: Path
) -> None:
    keys = LocalKeyFile(kek_file)
    spool = SpoolingTranscriptStore(inner, tmp_path / "spool", **FAST)
    store = SealedTranscriptStore(spool, keys)
    call = make_call()
    await store.create_call(call)
    inner.down = True
    await store.append_utterance(make_utt(call.call_id, text="spooled across a restart"))
    await store.end_call(call.call_id, T0, "ended", None)
    inner.close = _noop  # type: ignore[method-assign]  # keep the fake's data for the "next start"
    await store.close()  # still down: the spool stays on disk
    assert (tmp_path / "spool" / "transcripts.spool").exists()

    inner.down = False
    inner.closed = False
    spool2 = SpoolingTranscriptStore(inner, tmp_path / "spool", **FAST)
    await spool2.start()
    assert spool2.degraded
    await settle(spool2)
    store2 = SealedTranscriptStore(spool2, keys)
    assert [u.text for u in await store2.get_utterances(call.call_id)] == ["spooled across a restart"]
    assert (await store2.get_call(call.call_id)).status == "ended"


async def _noop() -> None:
    return None


async def test_a_write_refused_for_good_is_counted_and_skipped(
    inner: KeyedMemoryStore, tmp_path: Path
) -> None:
    spool = SpoolingTranscriptStore(inner, tmp_path / "spool", **FAST)
    call = make_call()
    await spool.create_call(call)
    inner.down = True
    await spool.end_call("ghost", T0, "ended", None)  # no such call: refused when replayed
    await spool.end_call(call.call_id, T0, "failed", "x")
    inner.down = False
    await settle(spool)
    assert spool.failed_writes == 1
    assert (await spool.get_call(call.call_id)).status == "failed"
    with pytest.raises(NotFoundError):
        await spool.get_call("ghost")
    await spool.close()


def test_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "x.spool"
    append_records(path, [b"one", b"two"])
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x09half")  # a crash mid-append
    assert read_records(path) == [b"one", b"two"]
    append_records(path, [b"three"])
    assert read_records(path) == [b"one", b"two", b"three"]


# recordings -------------------------------------------------------------------------------------------


async def test_recording_bytes_spool_while_the_object_store_is_down(tmp_path: Path) -> None:
    inner = FlakyRecordings()
    rec = SpoolingRecordingStore(inner, tmp_path / "rec", **FAST)
    await rec.start()
    sink = await rec.open_track("c1", 0)
    sent = bytearray()
    for i in range(30):
        if i == 10:
            inner.down = True
        if i == 20:
            inner.down = False
        chunk = os.urandom(100 + i)
        sent += chunk
        await sink.append(chunk)
        if i % 3 == 2:
            await sink.flush()
            if 10 <= i < 20:
                assert rec.degraded
    await sink.close()
    await settle(rec)
    assert await rec.read_track("c1", 0) == bytes(sent)
    assert rec.spooled_bytes > 0 and list((tmp_path / "rec").iterdir()) == []
    await rec.close()


async def test_a_track_closed_during_the_outage_is_replayed_later(tmp_path: Path) -> None:
    inner = FlakyRecordings()
    rec = SpoolingRecordingStore(inner, tmp_path / "rec", **FAST)
    sink = await rec.open_track("c1", 0)
    await sink.append(b"flushed;")
    await sink.flush()
    inner.down = True
    await sink.append(b"spooled;")
    await sink.flush()
    await sink.append(b"tail")
    await sink.close()  # down: the rest is on the spool disk
    files = list((tmp_path / "rec").iterdir())
    assert [f.name for f in files] == ["c1.0.rec"] and mode(files[0]) == 0o600
    assert rec.degraded
    inner.down = False
    await settle(rec)
    assert await rec.read_track("c1", 0) == b"flushed;spooled;tail"
    await rec.close()


async def test_spooled_tracks_survive_a_restart_and_reopened_tracks_keep_order(tmp_path: Path) -> None:
    inner = FlakyRecordings()
    rec = SpoolingRecordingStore(inner, tmp_path / "rec", **FAST)
    sink = await rec.open_track("c1", 0)
    inner.down = True
    await sink.append(b"A")
    await sink.flush()
    await rec.close()  # the pod stops while the store is down (the sink was never closed)
    assert (tmp_path / "rec" / "c1.0.rec").exists()
    inner.down = False
    inner.closed = False
    inner.open_keys.clear()  # the old process's open sink died with it
    rec2 = SpoolingRecordingStore(inner, tmp_path / "rec", **FAST)
    sink2 = await rec2.open_track("c1", 0)  # reopened before the replay ran: spooled bytes go first
    await sink2.append(b"B")
    await sink2.close()
    await settle(rec2)
    assert await rec2.read_track("c1", 0) == b"AB"
    await rec2.close()


# bounds (issue 18 item 5) -------------------------------------------------------------------------------


async def test_the_transcript_spool_is_bounded_and_a_refusal_is_counted_and_logged_without_text(
    inner: KeyedMemoryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = SpoolingTranscriptStore(inner, tmp_path / "spool", max_bytes=2000, **FAST)
    call = make_call()
    await spool.create_call(call)
    await spool.put_track(make_track(call.call_id))
    inner.down = True
    stored = 0
    with structlog.testing.capture_logs() as logs:
        for n in range(1, 200):
            try:
                await spool.update_track_counts(
                    call.call_id, 0, received=n, sealed=n, lost=0, duration_s=n * 0.02
                )
                stored = n
            except SpoolFullError as exc:
                want = f"transcript spool full (2000 bytes undelivered): counts of call {call.call_id}"
                assert str(exc) == want + " not stored"
                break
        else:
            raise AssertionError("the spool took 199 writes under a 2000-byte bound")
    assert 5 < stored < 199 and spool.refused_writes == 1 and spool.pending == stored
    file_size = (tmp_path / "spool" / "transcripts.spool").stat().st_size
    assert spool.backlog_bytes == file_size <= 2000
    full = [e for e in logs if e["event"] == "transcript_spool_full"]
    assert full == [
        {
            "event": "transcript_spool_full",
            "log_level": "error",
            "op": "counts",
            "call_id": call.call_id,
            "backlog_bytes": file_size,
            "max_bytes": 2000,
            "refused": 1,
        }
    ]
    inner.down = False
    await settle(spool)  # delivered: the bound frees up
    assert spool.backlog_bytes == 0 and spool.pending == 0
    assert (await spool.get_track(call.call_id, 0)).frames_received == stored
    await spool.update_track_counts(call.call_id, 0, received=500, sealed=500, lost=0, duration_s=10.0)
    await spool.close()


async def test_the_transcript_backlog_of_an_earlier_run_counts_against_the_bound(
    inner: KeyedMemoryStore, tmp_path: Path
) -> None:
    call = make_call()
    await inner.create_call(call)
    await inner.put_track(make_track(call.call_id))
    inner.down = True
    first = SpoolingTranscriptStore(inner, tmp_path / "spool", max_bytes=1000, **FAST)
    with pytest.raises(SpoolFullError):
        for n in range(100):
            await first.update_track_counts(call.call_id, 0, received=n, sealed=n, lost=0, duration_s=1.0)
    left = first.backlog_bytes
    await first._retrier.stop()
    second = SpoolingTranscriptStore(inner, tmp_path / "spool", max_bytes=1000, **FAST)
    with pytest.raises(SpoolFullError):
        await second.update_track_counts(call.call_id, 0, received=1, sealed=1, lost=0, duration_s=1.0)
    assert second.backlog_bytes == left
    inner.down = False
    await second.start()
    await settle(second)
    assert second.backlog_bytes == 0


async def test_the_recording_spool_is_bounded_and_a_full_one_fails_the_flush_loudly(
    tmp_path: Path,
) -> None:
    inner = FlakyRecordings()
    rec = SpoolingRecordingStore(inner, tmp_path / "rec", max_bytes=3000, **FAST)
    await rec.start()
    a, b = await rec.open_track("c1", 0), await rec.open_track("c2", 0)
    inner.down = True
    await a.append(b"a" * 1000)
    await a.flush()
    await b.append(b"b" * 1000)
    await b.flush()
    assert rec.backlog_bytes == 2016 and rec.refused_writes == 0
    await b.append(b"B" * 1000)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(
            SpoolFullError,
            match=r"^recording spool full \(3000 bytes undelivered\): "
            r"1000 bytes of call c2 track 0 not stored$",
        ):
            await b.flush()  # the call's sealer fails: the call ends, its unflushed frames counted lost
    assert rec.refused_writes == 1 and [e["event"] for e in logs] == ["recording_spool_full"]
    assert rec.backlog_bytes == 2016 == sum(p.stat().st_size for p in (tmp_path / "rec").iterdir())
    with pytest.raises(SpoolFullError):
        await b.close()  # still full: the tail is not stored; what was spooled stays for the drain
    assert rec.refused_writes == 2 and rec.degraded
    stores = Stores(transcripts=MemoryTranscriptStore(), recordings=rec)  # what /metrics reads
    assert (stores.spool_refused_writes, stores.spool_backlog_bytes) == (2, 2016)
    inner.down = False
    await a.close()
    await settle(rec)
    assert rec.backlog_bytes == 0 and list((tmp_path / "rec").iterdir()) == []
    assert await rec.read_track("c1", 0) == b"a" * 1000
    assert await rec.read_track("c2", 0) == b"b" * 1000
    await rec.close()

"""Envelope keys: the local KEK file, wrapping bound to its track, rotation, re-wrapping, destruction."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.errors import KeyDestroyedError, KeyError_, KeyFileError
from storage.factory import Stores, memory_stores, open_stores
from storage.keys import LocalKeyFile, new_data_key, rewrap_all, track_key_context
from storage.protocols import WrappedKey
from tests.storage_contract import make_call, make_track

CTX = track_key_context("c1", 0)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_wrap_unwrap_round_trip_and_file_layout(kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    data_key = new_data_key(16)
    wrapped = keys.wrap(data_key, CTX)
    assert (wrapped.kek_version, len(wrapped.blob)) == (1, 12 + 16 + 16)
    assert keys.unwrap(wrapped, CTX) == data_key
    assert keys.wrap(data_key, CTX).blob != wrapped.blob  # random nonce per wrap
    assert mode(kek_file) == 0o600 and mode(kek_file.parent) == 0o700
    doc = json.loads(kek_file.read_text())
    assert doc["kek_id"] == wrapped.kek_id and doc["current"] == 1 and set(doc["versions"]) == {"1"}
    assert data_key not in kek_file.read_bytes()
    assert LocalKeyFile(kek_file).unwrap(wrapped, CTX) == data_key  # another instance, same file


def test_context_binds_the_key_to_its_call_and_track(kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    wrapped = keys.wrap(new_data_key(), CTX)
    for other in (track_key_context("c1", 1), track_key_context("c2", 0), b""):
        with pytest.raises(KeyError_, match=r"^wrapped key failed authentication \(KEK \w+ v1, 44 bytes\)"):
            keys.unwrap(wrapped, other)


def test_tampered_or_mislabelled_wrapped_keys_fail(kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    wrapped = keys.wrap(new_data_key(), CTX)
    flipped = bytes([wrapped.blob[0] ^ 1]) + wrapped.blob[1:]
    with pytest.raises(KeyError_, match="failed authentication"):
        keys.unwrap(WrappedKey(wrapped.kek_id, 1, flipped), CTX)
    with pytest.raises(KeyError_, match=r"^KEK \w+ has no version 7 in "):
        keys.unwrap(WrappedKey(wrapped.kek_id, 7, wrapped.blob), CTX)
    with pytest.raises(KeyError_, match=r"^wrapped key names KEK 'other'"):
        keys.unwrap(WrappedKey("other", 1, wrapped.blob), CTX)
    with pytest.raises(KeyError_, match=r"^wrapped key blob too short \(5 bytes\)$"):
        keys.unwrap(WrappedKey(wrapped.kek_id, 1, b"short"), CTX)
    with pytest.raises(KeyDestroyedError, match="was destroyed"):
        keys.unwrap(WrappedKey(wrapped.kek_id, 1, b""), CTX)


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_with_group_or_other_bits_is_refused(kek_file: Path, bad_mode: int) -> None:
    LocalKeyFile(kek_file).load()
    os.chmod(kek_file, bad_mode)
    with pytest.raises(KeyFileError) as err:
        LocalKeyFile(kek_file).load()
    assert str(err.value) == (
        f"key file {kek_file} has mode {bad_mode:04o}; it must be owner-only (chmod 600 {kek_file})"
    )


def test_corrupt_key_file_is_refused(kek_file: Path) -> None:
    os.makedirs(kek_file.parent, mode=0o700)
    fd = os.open(kek_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"format": 1, "kek_id": "x"}')
    os.close(fd)
    with pytest.raises(KeyFileError, match=r"is not a valid key file$"):
        LocalKeyFile(kek_file).load()


def test_rotate_twice_and_old_versions_still_unwrap(kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    k1 = new_data_key()
    w1 = keys.wrap(k1, CTX)
    assert keys.rotate() == 2
    k2 = new_data_key()
    w2 = keys.wrap(k2, CTX)
    assert keys.rotate() == 3
    w3 = keys.wrap(k1, CTX)
    assert [w.kek_version for w in (w1, w2, w3)] == [1, 2, 3]
    assert len({w.kek_id for w in (w1, w2, w3)}) == 1
    fresh = LocalKeyFile(kek_file)
    assert (fresh.unwrap(w1, CTX), fresh.unwrap(w2, CTX), fresh.unwrap(w3, CTX)) == (k1, k2, k1)
    assert fresh.current() == (w1.kek_id, 3)
    assert mode(kek_file) == 0o600
    assert sorted(os.listdir(kek_file.parent)) == ["kek.json", "kek.json.lock"]  # no temp files left


def test_rotation_by_another_process_is_noticed(kek_file: Path) -> None:
    a, b = LocalKeyFile(kek_file), LocalKeyFile(kek_file)
    b.load()
    assert a.rotate() == 2
    assert b.wrap(new_data_key(), CTX).kek_version == 2  # b re-reads the replaced file before wrapping
    c = LocalKeyFile(kek_file)
    c.load()
    w = a.wrap(b"k" * 16, CTX)
    a.rotate()
    assert c.unwrap(a.wrap(b"j" * 16, CTX), CTX) == b"j" * 16 and c.unwrap(w, CTX) == b"k" * 16


def test_concurrent_creation_and_rotation_lose_nothing(kek_file: Path) -> None:
    instances = [LocalKeyFile(kek_file) for _ in range(6)]
    threads = [threading.Thread(target=k.load) for k in instances]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({k.current()[0] for k in instances}) == 1  # everyone uses the one file the first creator made
    threads = [threading.Thread(target=k.rotate) for k in instances]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    doc = json.loads(kek_file.read_text())
    assert sorted(int(v) for v in doc["versions"]) == list(range(1, 8)) and doc["current"] == 7


@pytest.fixture(params=["local", "memory"])
async def stores(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Stores]:
    s = await open_stores(data_dir) if request.param == "local" else memory_stores()
    yield s
    await s.close()


async def test_rewrap_all_moves_every_key_to_the_new_version(stores: Stores, kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    t = stores.transcripts
    data_keys = {}
    for i in range(3):
        call = make_call(f"c{i}")
        await t.create_call(call)
        for n in range(2):
            data_keys[(call.call_id, n)] = dk = new_data_key()
            await t.put_track(
                make_track(call.call_id, n, wrapped_key=keys.wrap(dk, track_key_context(call.call_id, n)))
            )
    assert await t.destroy_track_key("c2", 1)
    sink = await stores.recordings.open_track("c0", 0)
    await sink.append(b"sealed media")
    await sink.close()
    keys.rotate()
    report = await rewrap_all(t, keys)
    assert (report.rewrapped, report.unchanged, report.skipped, report.version) == (5, 0, 0, 2)
    for (call_id, n), dk in data_keys.items():
        info = await t.get_track(call_id, n)
        if (call_id, n) == ("c2", 1):
            assert info.key_destroyed  # destroyed stays destroyed
            continue
        assert info.wrapped_key.kek_version == 2
        assert keys.unwrap(info.wrapped_key, track_key_context(call_id, n)) == dk
    assert await stores.recordings.read_track("c0", 0) == b"sealed media"  # media untouched
    again = await rewrap_all(t, keys)
    assert (again.rewrapped, again.unchanged) == (0, 5)


async def test_rewrap_never_revives_a_key_destroyed_meanwhile(stores: Stores, kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    t = stores.transcripts
    await t.create_call(make_call("c1"))
    await t.put_track(make_track("c1", 0, wrapped_key=keys.wrap(new_data_key(), CTX)))
    keys.rotate()

    class DestroyingStore:
        """Retention destroys the key between rewrap_all's listing and its swap."""

        def __getattr__(self, name: str) -> object:
            return getattr(t, name)

        async def replace_wrapped_key(self, *args: object, **kw: object) -> bool:
            await t.destroy_track_key("c1", 0)
            return await t.replace_wrapped_key(*args, **kw)  # type: ignore[arg-type]

    report = await rewrap_all(DestroyingStore(), keys)  # type: ignore[arg-type]
    assert (report.rewrapped, report.skipped) == (0, 1)
    assert (await t.get_track("c1", 0)).key_destroyed


async def test_destroyed_key_makes_the_recording_unrecoverable(stores: Stores, kek_file: Path) -> None:
    keys = LocalKeyFile(kek_file)
    await stores.transcripts.create_call(make_call("c1"))
    await stores.transcripts.put_track(make_track("c1", 0, wrapped_key=keys.wrap(new_data_key(), CTX)))
    assert await stores.transcripts.destroy_track_key("c1", 0)
    info = await stores.transcripts.get_track("c1", 0)
    with pytest.raises(KeyDestroyedError, match=r"^wrapped key \(KEK \w+ v1\) was destroyed$"):
        keys.unwrap(info.wrapped_key, CTX)

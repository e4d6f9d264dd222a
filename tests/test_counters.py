"""FileCounterStore: durable, monotonic, owner-only, and what SFrameSender resumes from."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from media import sframe
from storage.counters import FileCounterStore
from storage.errors import StorageError

FP = bytes.fromhex("00112233445566778899aabbccddeeff")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_permissions(tmp_path: Path) -> None:
    d = tmp_path / "counters"
    store = FileCounterStore(d)
    store.reserve(FP, 7, 256)
    files = list(d.iterdir())
    assert mode(d) == 0o700
    assert [f.name for f in files] == [f"{FP.hex()}-7.ctr"] and mode(files[0]) == 0o600


def test_loose_directory_is_tightened(tmp_path: Path) -> None:
    d = tmp_path / "loose"
    d.mkdir()
    os.chmod(d, 0o755)  # noqa: S103  (the loose mode under test)
    FileCounterStore(d)
    assert mode(d) == 0o700


def test_durable_across_instances_and_monotonic(tmp_path: Path) -> None:
    store = FileCounterStore(tmp_path)
    assert store.load(FP, 1) == 0
    store.reserve(FP, 1, 512)
    store.reserve(FP, 1, 100)  # never moves down
    store.reserve(FP, 2, 2**64)
    again = FileCounterStore(tmp_path)
    assert (again.load(FP, 1), again.load(FP, 2), again.load(FP, 3)) == (512, 2**64, 0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ctr-")]  # no temp files left


def test_corrupt_file_fails_closed(tmp_path: Path) -> None:
    store = FileCounterStore(tmp_path)
    (tmp_path / f"{FP.hex()}-4.ctr").write_text("12x\n")
    with pytest.raises(StorageError, match=r"^counter file for KID 4 is corrupt$"):
        store.load(FP, 4)


def test_sender_resumes_after_restart(tmp_path: Path) -> None:
    key = os.urandom(16)
    sender = sframe.SFrameSender(4, key, 9, counter_store=FileCounterStore(tmp_path), block=50)
    used = [sframe.parse_header(sender.protect(b"x"))[1] for _ in range(70)]
    assert used == list(range(70))
    # No file names or contents carry the key.
    for f in tmp_path.iterdir():
        assert key.hex() not in f.name and key not in f.read_bytes()
    restarted = sframe.SFrameSender(4, key, 9, counter_store=FileCounterStore(tmp_path), block=50)
    assert sframe.parse_header(restarted.protect(b"x"))[1] == 100

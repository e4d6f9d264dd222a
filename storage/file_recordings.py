"""Embedded RecordingStore: one append-only file per sealed track, `<dir>/<call_id>/<track>.sfr`.

Directories are 0700 and files 0600 from creation. Call ids are checked (`validate_call_id`) and the
resolved path must stay under the store's directory; symlinks are not followed (`O_NOFOLLOW`, `lstat`).
A sink buffers appends in memory and writes them on a thread once `BUFFER_BYTES` are pending (so `append`
applies backpressure, never drops); `flush()` writes and fsyncs the file (and, the first time, its
directories), so what was appended is durable when it returns. A crash loses at most what was appended since
the last flush: the pipeline flushes about once a second.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from storage.errors import ConflictError, NotFoundError, StorageError, StoreClosedError
from storage.files import fsync_dir
from storage.protocols import validate_call_id, validate_track

BUFFER_BYTES = 64 * 1024
SUFFIX = ".sfr"
T = TypeVar("T")


def _ignore_missing(
    func: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]
) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _mkdir_private(path: Path) -> bool:
    """Create `path` as 0700 (True if created); refuse a symlink or non-directory in its place."""
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; make it exact
        return True
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"recording path {path} is not a directory") from None
        return False


class LocalRecordingSink:
    """RecordingSink for one track file; appends land in the order they were made."""

    def __init__(self, store: LocalRecordingStore, key: tuple[str, int], path: Path, fd: int) -> None:
        self._store = store
        self._key = key
        self.path = path
        self._fd = fd
        self._buffer = bytearray()
        self._lock = asyncio.Lock()
        self._closed = False
        self._dirs_synced = False
        self.bytes_written = 0

    async def append(self, data: bytes) -> None:
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")
        self._buffer += data
        if len(self._buffer) >= BUFFER_BYTES:
            await self._drain(sync=False)

    async def flush(self) -> None:
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")
        await self._drain(sync=True)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._drain(sync=True)
        finally:
            self._closed = True
            os.close(self._fd)  # no I/O left to wait for: the data was fsynced above
            self._store._release(self._key)

    async def _drain(self, *, sync: bool) -> None:
        async with self._lock:
            data = bytes(self._buffer)
            self._buffer.clear()
            sync_dirs = sync and not self._dirs_synced
            done = [0]  # bytes of `data` that reached the file, even if the write then failed
            try:
                await self._store._run(partial(self._write, data, sync, sync_dirs, done))
            except BaseException:
                # Keep only what the file did not get: re-queuing a prefix that was written would
                # duplicate those bytes on retry and corrupt the recording from that record on.
                self._buffer[:0] = data[done[0] :]
                raise
            if sync_dirs:
                self._dirs_synced = True

    def _write(self, data: bytes, sync: bool, sync_dirs: bool, done: list[int]) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            done[0] += n
            self.bytes_written += n
        if sync:
            os.fsync(self._fd)
        if sync_dirs:  # the file's name and its call directory's name must be durable too
            fsync_dir(self.path.parent)
            fsync_dir(self.path.parent.parent)


class LocalRecordingStore:
    """RecordingStore on a local directory (created 0700 if missing)."""

    def __init__(self, directory: Path | str, *, max_threads: int = 4) -> None:
        self.directory = Path(directory)
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="converse-rec")
        self._open: set[tuple[str, int]] = set()
        self._closed = False
        self._ready = False

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreClosedError(f"recording store {self.directory} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def track_path(self, call_id: str, track: int) -> Path:
        """The file of one track; raises InvalidIdError for ids that are not path-safe."""
        validate_call_id(call_id)
        validate_track(track)
        path = self.directory / call_id / f"{track}{SUFFIX}"
        # Defence in depth (pure, no I/O): a validated id has no separator and cannot be "." or "..".
        if os.path.normpath(path).rsplit(os.sep, 2)[0] != os.path.normpath(self.directory):
            raise StorageError(f"recording path for call {call_id} escapes {self.directory}")
        return path

    def _open_file(self, path: Path) -> int:
        if not self._ready:
            if not self.directory.exists():
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.directory, 0o700)
            self._ready = True
        _mkdir_private(path.parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StorageError(
                    f"recording file for call {path.parent.name} track {path.stem} is a symlink"
                ) from None
            raise
        os.fchmod(fd, 0o600)
        return fd

    async def open_track(self, call_id: str, track: int) -> LocalRecordingSink:
        """Open the track's file for appending (an existing file is continued, e.g. after a restart)."""
        path = self.track_path(call_id, track)
        key = (call_id, track)
        if self._closed:
            raise StoreClosedError(f"recording store {self.directory} is closed")
        if key in self._open:
            raise ConflictError(f"call {call_id} track {track} is already open for writing")
        self._open.add(key)
        try:
            fd = await self._run(partial(self._open_file, path))
        except BaseException:
            self._open.discard(key)
            raise
        return LocalRecordingSink(self, key, path, fd)

    def _release(self, key: tuple[str, int]) -> None:
        self._open.discard(key)

    async def read_track(self, call_id: str, track: int) -> bytes:
        path = self.track_path(call_id, track)

        def read() -> bytes:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFoundError(f"recording of call {call_id} track {track} not found") from None
            with os.fdopen(fd, "rb") as f:
                return f.read()

        return await self._run(read)

    async def delete_call(self, call_id: str) -> None:
        """Remove every track file of the call; deleting a call with no recordings is not an error."""
        call_dir = self.track_path(call_id, 0).parent
        if any(key[0] == call_id for key in self._open):
            raise ConflictError(f"call {call_id} is being recorded; close its tracks before deleting it")

        def delete() -> None:
            try:
                st = os.lstat(call_dir)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(st.st_mode):
                raise StorageError(f"recording path for call {call_id} is not a directory")
            shutil.rmtree(call_dir, onerror=_ignore_missing)  # another pod's retention may race us
            fsync_dir(self.directory)

        await self._run(delete)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)

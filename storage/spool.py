"""Riding out a storage outage: writes that find the backend unreachable go to a local spool and are
replayed, in order, when it answers again.

`SpoolingTranscriptStore(inner, dir)`: `append_utterance`, `update_track_counts` and `end_call` that raise
StorageUnavailableError are appended to `dir/transcripts.spool`; from then on every such write joins the
queue behind them (so per-call order holds) until a background task has replayed the queue, retrying with
backoff. Replays are idempotent (identical utterances are accepted again, counts and ends are absolute), so a
crash mid-replay only repeats work. A replayed write the store refuses for good (its call was deleted, a
conflict) is counted in `failed_writes` and logged by id, and the queue moves on. Only sealed utterance text
is ever spooled: put this wrapper *under* `SealedTranscriptStore` (`Sealed(Spooling(store))`); an unsealed
text is refused (the write fails as it would have without a spool).

`SpoolingRecordingStore(inner, dir)`: a track sink that cannot flush writes what the flush should have made
durable to `dir/<call_id>.<track>.rec` (sealed SFrame records already) and keeps accepting appends; the
drain task re-sends them to the same inner sink and, once it flushes, removes the file. A track closed
while the store is down, or left by a crashed process, is replayed from its file through a fresh sink.

Spool files are append-only, 0600 in a 0700 directory, each record framed `len(4) || payload || crc32(4)`
and fsynced before the write returns; a torn tail (a crash mid-append, never acknowledged) is dropped when
the file is read. `close()` tries a last drain and leaves what is still undelivered on disk, replayed on the
next start. `degraded` (anything spooled and undelivered) feeds readiness; `spooled_bytes` feeds metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from storage.errors import StorageError, StorageUnavailableError, StoreClosedError
from storage.protocols import (
    KeyedTranscriptStore,
    RecordingSink,
    RecordingStore,
    UtteranceRecord,
    check_counts,
    check_end,
    check_utterance,
    validate_call_id,
    validate_track,
)
from storage.sealed_text import TranscriptStoreProxy, is_sealed

log = structlog.get_logger("storage.spool")
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
TRANSCRIPTS_FILE = "transcripts.spool"
# Bounds on what may wait undelivered on the spool disk (docs/deployment.md, "Outage spool"). Together they
# stay under the data volume's sizeLimit (2Gi in deploy/k8s): a spool that grew past it would get the pod
# evicted, and the spool with it. Past a bound a write is refused (SpoolFullError), counted in
# `refused_writes` and logged with ids only: a call's audio flush then fails and the call ends loudly
# (sealed audio is never dropped silently); a refused utterance is counted like any failed write.
MAX_TRANSCRIPT_SPOOL_BYTES = 64 << 20  # ~100k utterances and count updates
MAX_RECORDING_SPOOL_BYTES = 1 << 30  # ~50 min of 64 tracks (32 calls) at ~5.5 kB/s of sealed Opus each
_REC_FILE = re.compile(r"([A-Za-z0-9_-]{1,64})\.(\d{1,4})\.rec")
_HEADER = struct.Struct(">I")
_FRAMING = 8  # length + crc32 around every record


class SpoolFullError(StorageError):
    """The outage spool holds its bound of undelivered bytes; this write was not stored (ids only)."""


# spool files -------------------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload + _HEADER.pack(zlib.crc32(payload))


def append_records(path: Path, payloads: list[bytes]) -> int:
    """Append framed records and fsync; returns the bytes written. Creates the file 0600."""
    data = b"".join(_frame(p) for p in payloads)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data)


def read_records(path: Path) -> list[bytes]:
    """Every whole record of a spool file, in order; a torn or corrupt tail is cut off (and truncated)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "r+b") as f:
        raw = f.read()
        out, pos = [], 0
        while pos + 8 <= len(raw):
            (n,) = _HEADER.unpack_from(raw, pos)
            end = pos + 4 + n
            if end + 4 > len(raw):
                break
            payload = raw[pos + 4 : end]
            if _HEADER.unpack_from(raw, end)[0] != zlib.crc32(payload):
                break
            out.append(payload)
            pos = end + 4
        if pos != len(raw):
            log.warning("spool_tail_dropped", file=path.name, bytes=len(raw) - pos)
            f.truncate(pos)
            f.flush()
            os.fsync(f.fileno())
    return out


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Retrier:
    """The owned background task that drains a spool, with exponential backoff between failed attempts."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[bool]], initial: float, maximum: float
    ) -> None:
        self._name = name
        self._step = step  # one pass: True when nothing is left, False to retry later
        self._initial, self._max = initial, maximum
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False

    def kick(self) -> None:
        if self._stopped:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)
        self._wake.set()

    async def _run(self) -> None:
        delay = self._initial
        # The flag, not only the cancellation: on 3.11 `wait_for` drops a cancel that lands as the wake
        # event fires (a kick just before stop), and the loop would retry a down store forever.
        while not self._stopped:
            self._wake.clear()
            try:
                if await self._step():
                    return
            except StorageUnavailableError:
                pass
            except Exception as exc:  # keep draining; ids only in storage error messages
                log.error(
                    "spool_drain_error", task=self._name, error=type(exc).__name__, detail=str(exc)[:200]
                )
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self._max)

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass


# transcripts -------------------------------------------------------------------------------------------


def _utt_op(u: UtteranceRecord) -> dict[str, Any]:
    return {
        "op": "utterance",
        "call_id": u.call_id,
        "track": u.track,
        "seq": u.seq,
        "start": u.start,
        "end": u.end,
        "text": u.text,
        "committed_at": u.committed_at,
        "redactions": dict(u.redactions),
    }


class SpoolingTranscriptStore(TranscriptStoreProxy):
    """Spools the writes of a live call while the transcript store is unreachable (see module doc)."""

    def __init__(
        self,
        inner: KeyedTranscriptStore,
        spool_dir: Path | str,
        *,
        retry_initial: float = RETRY_INITIAL_S,
        retry_max: float = RETRY_MAX_S,
        allow_unsealed_text: bool = False,
        max_bytes: int = MAX_TRANSCRIPT_SPOOL_BYTES,
    ) -> None:
        super().__init__(inner)
        self.spool_dir = Path(spool_dir)
        self._file = self.spool_dir / TRANSCRIPTS_FILE
        self._allow_unsealed = allow_unsealed_text
        self.max_bytes = max_bytes
        self._queue: deque[tuple[dict[str, Any], int]] = deque()  # (op, its bytes in the spool file)
        self.backlog_bytes = 0  # undelivered bytes in the spool file
        self._loaded = False
        self._lock = asyncio.Lock()
        self._retrier = _Retrier("transcript-spool-drain", self._drain_step, retry_initial, retry_max)
        self._closed = False
        self.spooled_bytes = 0
        self.failed_writes = 0
        self.refused_writes = 0  # not spooled: the spool was full

    @property
    def degraded(self) -> bool:
        return bool(self._queue)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Load what an earlier run left in the spool and start replaying it."""
        async with self._lock:
            await self._load()
        if self._queue:
            self._retrier.kick()

    async def _load(self) -> None:
        if not self._loaded:
            await asyncio.to_thread(_private_dir, self.spool_dir)
            records = await asyncio.to_thread(read_records, self._file)
            loaded = [(json.loads(r), len(r) + _FRAMING) for r in records]
            self._queue.extendleft(reversed(loaded))
            self.backlog_bytes += sum(n for _, n in loaded)
            self._loaded = True

    async def _write(self, op: dict[str, Any], direct: Callable[[], Awaitable[None]]) -> None:
        if self._closed:
            raise StoreClosedError(f"transcript spool {self.spool_dir} is closed")
        if not self._loaded:
            async with self._lock:
                await self._load()
        if not self._queue:
            try:
                await direct()
                return
            except StorageUnavailableError as exc:
                if op["op"] == "utterance" and not self._allow_unsealed and not is_sealed(op["text"]):
                    raise StorageUnavailableError(
                        f"{exc} (not spooled: utterance text is not sealed)"
                    ) from None
        elif op["op"] == "utterance" and not self._allow_unsealed and not is_sealed(op["text"]):
            raise StorageUnavailableError(
                "transcript store degraded; unsealed utterance text is never spooled"
            )
        async with self._lock:
            await self._load()
            payload = json.dumps(op, separators=(",", ":"), sort_keys=True).encode("utf-8")
            size = len(payload) + _FRAMING
            if self.backlog_bytes + size > self.max_bytes:
                self.refused_writes += 1
                log.error(
                    "transcript_spool_full",
                    op=op["op"],
                    call_id=op["call_id"],
                    backlog_bytes=self.backlog_bytes,
                    max_bytes=self.max_bytes,
                    refused=self.refused_writes,
                )
                raise SpoolFullError(
                    f"transcript spool full ({self.max_bytes} bytes undelivered): "
                    f"{op['op']} of call {op['call_id']} not stored"
                )
            written = await asyncio.to_thread(append_records, self._file, [payload])
            self.spooled_bytes += written
            self.backlog_bytes += written
            self._queue.append((op, written))
        log.warning("transcript_write_spooled", op=op["op"], call_id=op["call_id"], queued=len(self._queue))
        self._retrier.kick()

    async def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "utterance":
            fields = {k: v for k, v in op.items() if k != "op"}
            await self.inner.append_utterance(UtteranceRecord(**fields))
        elif kind == "counts":
            await self.inner.update_track_counts(
                op["call_id"],
                op["track"],
                received=op["received"],
                sealed=op["sealed"],
                lost=op["lost"],
                duration_s=op["duration_s"],
            )
        elif kind == "end":
            await self.inner.end_call(op["call_id"], op["ended_at"], op["status"], op["reason"])
        else:
            raise StorageError(f"unknown spooled operation {kind!r}")

    async def _drain_step(self) -> bool:
        """Replay the queue head to tail; True once it is empty (file removed)."""
        await self._load()
        while True:
            async with self._lock:
                if not self._queue:
                    await asyncio.to_thread(_remove, self._file)
                    self.backlog_bytes = 0
                    return True
                op = self._queue[0][0]
            try:
                await self._apply(op)
            except StorageUnavailableError:
                raise
            except StorageError as exc:  # refused for good; ids and the error class only
                self.failed_writes += 1
                log.error(
                    "spooled_write_failed", op=op["op"], call_id=op["call_id"], error=type(exc).__name__
                )
            async with self._lock:
                self.backlog_bytes -= self._queue.popleft()[1]

    # the writes a live call makes ---------------------------------------------------------------------
    async def append_utterance(self, utt: UtteranceRecord) -> None:
        u = check_utterance(utt)
        await self._write(_utt_op(u), lambda: self.inner.append_utterance(u))

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        validate_call_id(call_id)
        validate_track(track)
        duration = check_counts(received, sealed, lost, duration_s)
        op = {"op": "counts", "call_id": call_id, "track": track, "received": received, "sealed": sealed}
        op |= {"lost": lost, "duration_s": duration}
        await self._write(
            op,
            lambda: self.inner.update_track_counts(
                call_id, track, received=received, sealed=sealed, lost=lost, duration_s=duration
            ),
        )

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        validate_call_id(call_id)
        ended = check_end(status, ended_at)
        op = {"op": "end", "call_id": call_id, "ended_at": ended, "status": status, "reason": reason}
        await self._write(op, lambda: self.inner.end_call(call_id, ended, status, reason))

    async def drain(self) -> bool:
        """Try to deliver everything now; True if the spool is empty afterwards."""
        try:
            return await self._drain_step()
        except StorageUnavailableError:
            return False

    async def close(self) -> None:
        """Stop the drain task, try a last drain, close the inner store; undelivered writes stay on disk."""
        if self._closed:
            return
        self._closed = True
        await self._retrier.stop()
        try:
            if self._queue and not await self.drain():
                log.warning("transcript_spool_left_on_disk", queued=len(self._queue))
        finally:
            await self.inner.close()


# recordings --------------------------------------------------------------------------------------------


class SpoolingRecordingSink:
    """A track sink that spools what it cannot flush (see module doc). Appends that the inner sink refuses
    (it took nothing) are owed to it and re-sent before its next flush."""

    def __init__(self, store: SpoolingRecordingStore, key: tuple[str, int], inner: RecordingSink) -> None:
        self._store = store
        self._key = key
        self.inner = inner
        self.path = store._path(key)
        self._unspooled = bytearray()  # appended since the last durable point, not yet in the spool file
        self._owed = bytearray()  # appended but not accepted by the inner sink
        self._spooled = 0  # bytes of this track's spool file (counted in the store's backlog)
        self.degraded = False
        self._lock = asyncio.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")

    async def append(self, data: bytes) -> None:
        self._check_open()
        async with self._lock:
            self._unspooled += data
            if not self.degraded:
                try:
                    await self.inner.append(data)
                    return
                except StorageUnavailableError:
                    self._degrade()
            self._owed += data

    def _degrade(self) -> None:
        if not self.degraded:
            self.degraded = True
            log.warning("recording_degraded", call_id=self._key[0], track=self._key[1])

    async def flush(self) -> None:
        self._check_open()
        async with self._lock:
            if not self.degraded:
                try:
                    await self.inner.flush()
                    self._unspooled.clear()
                    return
                except StorageUnavailableError:
                    self._degrade()
            await self._spool()
        self._store._retrier.kick()

    async def _spool(self) -> None:
        if self._unspooled:
            data = bytes(self._unspooled)
            store = self._store
            if store.backlog_bytes + len(data) + _FRAMING > store.max_bytes:
                store._refuse(self._key, len(data))
            written = await asyncio.to_thread(append_records, self.path, [data])
            store.spooled_bytes += written
            store.backlog_bytes += written
            self._spooled += written
            self._unspooled.clear()

    def _forget_file(self) -> None:
        """The spool file was delivered and removed: its bytes leave the backlog."""
        self._store.backlog_bytes -= self._spooled
        self._spooled = 0

    async def _recover(self) -> bool:
        """One attempt to hand everything to the inner sink and flush it (lock held by the caller)."""
        if not self.degraded:
            return True
        if self._owed:
            await self.inner.append(bytes(self._owed))  # raises: took nothing, retry later
            self._owed.clear()
        await self.inner.flush()  # raises: keeps everything, retry later
        await asyncio.to_thread(_remove, self.path)
        self._forget_file()
        self._unspooled.clear()
        self.degraded = False
        log.info("recording_recovered", call_id=self._key[0], track=self._key[1])
        return True

    async def retry(self) -> bool:
        async with self._lock:
            if self._closed:
                return True
            return await self._recover()

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            try:
                if not self.degraded:
                    try:
                        await self.inner.flush()  # while the inner sink can still be retried
                    except StorageUnavailableError:
                        self._degrade()
                    else:
                        await self.inner.close()  # nothing left to write
                        return
                try:
                    await self._recover()
                    await self.inner.close()
                    return
                except StorageUnavailableError:
                    pass
                try:
                    await self._spool()  # everything not durable in the store is now in the file
                finally:  # (or the spool is full: the tail is lost, counted, and the caller told)
                    abort = getattr(self.inner, "abort", None)
                    try:
                        await (abort() if abort is not None else self.inner.close())
                    except StorageUnavailableError:
                        pass
                    if self._spooled:
                        self._store._leftovers[self._key] = self._spooled  # the drain replays it
                        self._store._retrier.kick()
            finally:
                self._store._release(self._key)


class SpoolingRecordingStore:
    """RecordingStore wrapper that spools sealed recording bytes through an object-store outage."""

    def __init__(
        self,
        inner: RecordingStore,
        spool_dir: Path | str,
        *,
        retry_initial: float = RETRY_INITIAL_S,
        retry_max: float = RETRY_MAX_S,
        max_bytes: int = MAX_RECORDING_SPOOL_BYTES,
    ) -> None:
        self.inner = inner
        self.spool_dir = Path(spool_dir)
        self.max_bytes = max_bytes
        self.backlog_bytes = 0  # undelivered bytes in spool files, all tracks
        self.refused_writes = 0  # flushes not spooled: the spool was full
        self._sinks: dict[tuple[str, int], SpoolingRecordingSink] = {}
        # Tracks with a spool file and no open sink (closed during an outage, or left by an earlier run),
        # with the file's size.
        self._leftovers: dict[tuple[str, int], int] = {}
        self._retrier = _Retrier("recording-spool-drain", self._drain_step, retry_initial, retry_max)
        self._loaded = False
        self._closed = False
        self.spooled_bytes = 0

    @property
    def degraded(self) -> bool:
        return bool(self._leftovers) or any(s.degraded for s in self._sinks.values())

    def _path(self, key: tuple[str, int]) -> Path:
        return self.spool_dir / f"{key[0]}.{key[1]}.rec"

    def _refuse(self, key: tuple[str, int], size: int) -> None:
        self.refused_writes += 1
        log.error(
            "recording_spool_full",
            call_id=key[0],
            track=key[1],
            bytes=size,
            backlog_bytes=self.backlog_bytes,
            max_bytes=self.max_bytes,
            refused=self.refused_writes,
        )
        raise SpoolFullError(
            f"recording spool full ({self.max_bytes} bytes undelivered): "
            f"{size} bytes of call {key[0]} track {key[1]} not stored"
        )

    async def start(self) -> None:
        """Find tracks an earlier run left in the spool and start replaying them."""
        await self._load()
        if self._leftovers:
            self._retrier.kick()

    async def _load(self) -> None:
        if self._loaded:
            return
        await asyncio.to_thread(_private_dir, self.spool_dir)
        for name in await asyncio.to_thread(os.listdir, self.spool_dir):
            m = _REC_FILE.fullmatch(name)
            if m is not None and int(m.group(2)) < 1024:
                key = (m.group(1), int(m.group(2)))
                size = (await asyncio.to_thread(os.stat, self._path(key))).st_size
                self._leftovers[key] = size
                self.backlog_bytes += size
        self._loaded = True

    async def open_track(self, call_id: str, track: int) -> SpoolingRecordingSink:
        validate_call_id(call_id)
        validate_track(track)
        if self._closed:
            raise StoreClosedError(f"recording spool {self.spool_dir} is closed")
        await self._load()
        key = (call_id, track)
        inner = await self.inner.open_track(call_id, track)  # ConflictError if already open
        sink = SpoolingRecordingSink(self, key, inner)
        if key in self._leftovers:  # spooled bytes of this track come first: adopt them
            sink._spooled = self._leftovers.pop(key)
            left = b"".join(await asyncio.to_thread(read_records, sink.path))
            sink.degraded = True
            sink._owed += left
            self._retrier.kick()
        self._sinks[key] = sink
        return sink

    def _release(self, key: tuple[str, int]) -> None:
        self._sinks.pop(key, None)

    async def _replay(self, key: tuple[str, int]) -> None:
        path = self._path(key)
        data = b"".join(await asyncio.to_thread(read_records, path))
        sink = await self.inner.open_track(*key)
        try:
            await sink.append(data)
            await sink.flush()
        except BaseException:
            abort = getattr(sink, "abort", None)
            try:
                await (abort() if abort is not None else sink.close())
            except StorageError:
                pass
            raise
        await sink.close()
        await asyncio.to_thread(_remove, path)
        self.backlog_bytes -= self._leftovers.get(key, 0)
        log.info("recording_spool_replayed", call_id=key[0], track=key[1], bytes=len(data))

    async def _drain_step(self) -> bool:
        await self._load()
        for sink in list(self._sinks.values()):
            await sink.retry()
        for key in sorted(self._leftovers):
            if key in self._sinks:
                continue
            await self._replay(key)
            self._leftovers.pop(key, None)
        return not self.degraded

    async def drain(self) -> bool:
        """Try to deliver everything now; True if nothing is left in the spool."""
        try:
            return await self._drain_step()
        except StorageUnavailableError:
            return False

    async def read_track(self, call_id: str, track: int) -> bytes:
        return await self.inner.read_track(call_id, track)

    async def delete_call(self, call_id: str) -> None:
        await self.inner.delete_call(call_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._retrier.stop()
        try:
            if self.degraded and not await self.drain():
                log.warning("recording_spool_left_on_disk", tracks=len(self._leftovers))
        finally:
            await self.inner.close()

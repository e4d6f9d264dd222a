"""Scale-out RecordingStore on S3-compatible object storage (aiobotocore).

S3 objects are immutable, so a track's append-only sealed recording is a series of numbered part objects,
`<call_id>/<track>/<seq:08d>.part`: every `flush()` uploads what was appended since the previous flush as
the next part (and `append` uploads on its own once `PART_BYTES` are pending), so a SIGKILL loses at most
the unflushed tail. `read_track` lists the parts and concatenates them in order. A reopened track continues
after its last part. A failed upload keeps the bytes and the part number, so the retry writes the same
object again (idempotent if the first attempt did land).

The bucket's client, its URL and its error mapping are `storage.s3_client`'s.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from storage.errors import ConflictError, NotFoundError, StorageError, StoreClosedError
from storage.protocols import validate_call_id, validate_track
from storage.s3_client import S3Bucket
from storage.s3_client import parse_s3_url as parse_s3_url  # kept for storage/audit_sinks.py until it moves

PART_BYTES = 8 * 1024 * 1024
_PART = re.compile(r"(\d{8})\.part")
_DELETE_BATCH = 1000


def _part_key(call_id: str, track: int, seq: int) -> str:
    return f"{call_id}/{track}/{seq:08d}.part"


class S3RecordingSink:
    """RecordingSink for one track: appends buffer in memory, each flush uploads one new part."""

    def __init__(self, store: S3RecordingStore, call_id: str, track: int) -> None:
        self._store = store
        self._key = (call_id, track)
        self._buffer = bytearray()
        self._next: int | None = None  # next part number, found by listing at the first upload
        self._lock = asyncio.Lock()
        self._closed = False
        self.parts_written = 0

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"recording sink {self._key[0]}/{self._key[1]} is closed")

    async def append(self, data: bytes) -> None:
        """Buffer `data` (uploading a part once `PART_BYTES` are pending). An append that raises took
        nothing; a flush that raises keeps everything for the retry."""
        self._check_open()
        self._buffer += data
        if len(self._buffer) >= PART_BYTES:
            try:
                await self._upload()
            except BaseException:
                if data and self._buffer.endswith(data):  # the upload failed: give `data` back
                    del self._buffer[-len(data) :]
                raise

    async def abort(self) -> None:
        """Close without uploading: drop what is buffered (the caller kept it elsewhere, e.g. a spool)."""
        self._buffer.clear()
        self._closed = True
        self._store._release(self._key)

    async def flush(self) -> None:
        self._check_open()
        await self._upload()

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._upload()
        finally:
            self._closed = True
            self._store._release(self._key)

    async def _upload(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            call_id, track = self._key
            if self._next is None:
                self._next = await self._store._next_part(call_id, track)
            data = bytes(self._buffer)
            # On failure the buffer and part number stay: the retry rewrites the same object.
            await self._store._put(_part_key(call_id, track, self._next), data)
            del self._buffer[: len(data)]
            self._next += 1
            self.parts_written += 1


class S3RecordingStore:
    """RecordingStore on one S3 bucket. The client is created at the first use (or `open()`)."""

    def __init__(self, url: str, *, connect_timeout: float = 3.0, read_timeout: float = 20.0) -> None:
        self.s3 = S3Bucket(
            url, name="recording store", connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self.bucket, self.where = self.s3.bucket, self.s3.where
        self._open: set[tuple[str, int]] = set()

    # plumbing -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the client and check the bucket exists (the worker calls this at start to fail early)."""
        async with self.s3.client() as s3:
            await s3.head_bucket(Bucket=self.bucket)

    async def _put(self, key: str, data: bytes) -> None:
        async with self.s3.client() as s3:
            await s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        async with self.s3.client() as s3:
            token: str | None = None
            while True:
                kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
                if token is not None:
                    kw["ContinuationToken"] = token
                page = await s3.list_objects_v2(**kw)
                keys.extend(str(o["Key"]) for o in page.get("Contents", []))
                if not page.get("IsTruncated"):
                    return keys
                token = page.get("NextContinuationToken")

    async def _parts(self, call_id: str, track: int) -> list[tuple[int, str]]:
        prefix = f"{call_id}/{track}/"
        found = []
        for key in await self._list(prefix):
            m = _PART.fullmatch(key[len(prefix) :])
            if m is not None:
                found.append((int(m.group(1)), key))
        return sorted(found)

    async def _next_part(self, call_id: str, track: int) -> int:
        parts = await self._parts(call_id, track)
        return parts[-1][0] + 1 if parts else 0

    # RecordingStore -----------------------------------------------------------------------------------
    async def open_track(self, call_id: str, track: int) -> S3RecordingSink:
        """A sink for the track (no request yet: an existing recording is continued at the first upload)."""
        validate_call_id(call_id)
        validate_track(track)
        self.s3.check_open()
        key = (call_id, track)
        if key in self._open:
            raise ConflictError(f"call {call_id} track {track} is already open for writing")
        self._open.add(key)
        return S3RecordingSink(self, call_id, track)

    def _release(self, key: tuple[str, int]) -> None:
        self._open.discard(key)

    async def read_track(self, call_id: str, track: int) -> bytes:
        validate_call_id(call_id)
        validate_track(track)
        what = f"recording of call {call_id} track {track}"
        parts = await self._parts(call_id, track)
        if not parts:
            raise NotFoundError(f"{what} not found")
        out = bytearray()
        for expected, (seq, key) in enumerate(parts):
            if seq != expected:
                raise StorageError(f"{what}: part {expected:08d} is missing (found {seq:08d})")
            async with self.s3.client(what) as s3:
                resp = await s3.get_object(Bucket=self.bucket, Key=key)
                async with resp["Body"] as body:
                    out += await body.read()
        return bytes(out)

    async def delete_call(self, call_id: str) -> None:
        """Delete every part of every track of the call; a call with no recordings is not an error."""
        validate_call_id(call_id)
        if any(key[0] == call_id for key in self._open):
            raise ConflictError(f"call {call_id} is being recorded; close its tracks before deleting it")
        keys = await self._list(f"{call_id}/")
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
            async with self.s3.client() as s3:
                resp = await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                raise StorageError(
                    f"deleting recordings of call {call_id}: {len(errors)} objects failed "
                    f"({errors[0].get('Code', '?')})"
                )

    async def close(self) -> None:
        await self.s3.close()

"""Where signed audit checkpoints are kept: somewhere the database cannot rewrite.

`CheckpointSink` is the small protocol the scale-out audit log (`storage.audit_pg`) writes through:

- `S3CheckpointSink` (scale-out): one object per checkpoint, `audit-checkpoints/<seq:010d>.json`, in the
  configured bucket. When the bucket has Object Lock enabled, every object is written with a COMPLIANCE
  retention (default 2192 days, HIPAA's six years), so not even the bucket owner can delete or overwrite that
  version before it expires; the S3 server refuses. A bucket without Object Lock still gets the objects under
  the same prefix, unprotected, and every `read()` says so in `notes` (`audit verify` logs it).
  An attacker who can write to the bucket can still hide a version behind a delete marker or a newer
  version; `read()` lists every version, uses the first one written and reports the others as findings.
- `FileCheckpointSink`: a local append-only JSON-lines file (0600, `flock`, `fsync`), as the embedded log
  uses. For a single host only: pods with files of their own would each hold a part of the sequence.

Sinks only store and return checkpoint text; signatures and chaining are checked by `storage.audit.verify`.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from storage.audit import AuditError, Finding, canonical_json, parse_checkpoint
from storage.errors import StorageError, StorageUnavailableError
from storage.s3_recordings import parse_s3_url

CHECKPOINT_PREFIX: Final = "audit-checkpoints/"
LOCK_DAYS: Final = 2192  # six years (HIPAA documentation retention), rounded up to whole days
LOCK_MODE: Final = "COMPLIANCE"
_KEY: Final = re.compile(r"(\d{10})\.json")


@dataclass(slots=True)
class SinkContents:
    """What a sink holds: checkpoint texts in sequence order, tampering it saw itself, and notes that are
    not findings (e.g. "not write-protected")."""

    lines: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class CheckpointSink(Protocol):
    where: str

    async def read(self) -> SinkContents:
        """Every checkpoint, oldest first."""
        ...

    async def latest(self) -> str | None:
        """The newest checkpoint's text (None when there is none)."""
        ...

    async def write(self, checkpoint: Mapping[str, Any]) -> None:
        """Store one new checkpoint (the caller serialises writers)."""
        ...

    async def close(self) -> None: ...


# local file ------------------------------------------------------------------------------------------------


class FileCheckpointSink:
    """Append-only JSON-lines file; the embedded log's format (one canonical JSON checkpoint per line)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    async def read(self) -> SinkContents:
        return SinkContents(lines=await asyncio.to_thread(self._lines))

    async def latest(self) -> str | None:
        lines = await asyncio.to_thread(self._lines)
        return lines[-1] if lines else None

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock

    async def write(self, checkpoint: Mapping[str, Any]) -> None:
        await asyncio.to_thread(self._append, canonical_json(dict(checkpoint)) + b"\n")

    async def close(self) -> None:
        return None


# S3 with Object Lock ---------------------------------------------------------------------------------------


def checkpoint_key(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:010d}.json"


def _seq_of(key: str) -> int | None:
    m = _KEY.fullmatch(key[len(CHECKPOINT_PREFIX) :]) if key.startswith(CHECKPOINT_PREFIX) else None
    return int(m.group(1)) if m else None


class S3CheckpointSink:
    """Checkpoints as Object-Locked S3 objects (see the module docstring). `url` is the object store URL
    (`s3://BUCKET?endpoint=...`); credentials come from the standard `AWS_*` variables."""

    def __init__(
        self,
        url: str,
        *,
        lock_days: int = LOCK_DAYS,
        lock_mode: str = LOCK_MODE,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
    ) -> None:
        if lock_mode not in ("COMPLIANCE", "GOVERNANCE") or lock_days < 1:
            raise AuditError("checkpoint lock must be COMPLIANCE or GOVERNANCE for at least one day")
        self.bucket, self.endpoint, self.region = parse_s3_url(url)
        at = f" at {self.endpoint}" if self.endpoint else ""
        self.where = f"s3://{self.bucket}/{CHECKPOINT_PREFIX}{at}"
        self.lock_days, self.lock_mode = lock_days, lock_mode
        self._config = AioConfig(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._locked: bool | None = None  # does the bucket have Object Lock? (asked once)
        self._known_seq = 0  # the newest checkpoint seen: listings start just before it

    async def _ensure_client(self) -> Any:
        async with self._opening:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3", endpoint_url=self.endpoint, region_name=self.region, config=self._config
                    )
                )
                self._stack = stack
            return self._client

    @asynccontextmanager
    async def _s3(self) -> AsyncIterator[Any]:
        try:
            yield await self._ensure_client()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code = str(err.get("Code", "?"))
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                raise StorageUnavailableError(f"{self.where}: {code} (HTTP {status})") from None
            raise StorageError(f"{self.where}: {code} (HTTP {status})") from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise StorageUnavailableError(f"{self.where}: {type(exc).__name__}") from None

    async def object_locked(self) -> bool:
        """Whether the bucket has Object Lock enabled (so checkpoint objects are write-protected)."""
        if self._locked is None:
            try:
                async with self._s3() as s3:
                    resp = await s3.get_object_lock_configuration(Bucket=self.bucket)
            except StorageError as exc:
                if "ObjectLockConfigurationNotFound" not in str(exc):
                    raise
                resp = {}
            cfg = resp.get("ObjectLockConfiguration") or {}
            self._locked = cfg.get("ObjectLockEnabled") == "Enabled"
        return self._locked

    def _unlocked_note(self) -> str:
        return (
            f"bucket {self.bucket} has no Object Lock: audit checkpoints under {CHECKPOINT_PREFIX} are "
            "not write-protected (create the bucket with Object Lock enabled)"
        )

    async def _versions(self, after_seq: int = 0) -> tuple[dict[int, list[dict[str, Any]]], list[str]]:
        """Versions and delete markers by checkpoint seq (keys after `after_seq - 1`); and unexpected keys."""
        versions: dict[int, list[dict[str, Any]]] = {}
        strays: list[str] = []
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": CHECKPOINT_PREFIX}
        if after_seq > 1:
            kw["KeyMarker"] = checkpoint_key(after_seq - 1)
        async with self._s3() as s3:
            while True:
                page = await s3.list_object_versions(**kw)
                listed = (("version", page.get("Versions", [])), ("marker", page.get("DeleteMarkers", [])))
                for kind, items in listed:
                    for item in items:
                        key = str(item["Key"])
                        seq = _seq_of(key)
                        if seq is None:
                            strays.append(key)
                            continue
                        versions.setdefault(seq, []).append({**item, "kind": kind})
                if not page.get("IsTruncated"):
                    break
                kw["KeyMarker"] = page.get("NextKeyMarker")
                kw["VersionIdMarker"] = page.get("NextVersionIdMarker")
        return versions, strays

    async def _get(self, key: str, version_id: str | None) -> str:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id and version_id != "null":
            kw["VersionId"] = version_id
        async with self._s3() as s3:
            resp = await s3.get_object(**kw)
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data.decode("utf-8", errors="replace")

    async def _contents(self, seq: int, items: list[dict[str, Any]]) -> tuple[str | None, Finding | None]:
        """The checkpoint text of one key and, if its versions disagree, a finding.

        The genuine version is the oldest one that parses as checkpoint `seq` (its signature is checked
        later by verify); several identical versions are a retried upload, not tampering."""
        key = checkpoint_key(seq)
        # Oldest first; listings put the newest first, so among equal times the later-listed is older.
        listed = [
            (item.get("LastModified"), -i, item) for i, item in enumerate(items) if item["kind"] == "version"
        ]
        listed.sort(key=lambda t: (t[0] is None, t[0] or datetime.min.replace(tzinfo=UTC), t[1]))
        texts = [await self._get(key, item.get("VersionId")) for _, _, item in listed]
        markers = sum(1 for item in items if item["kind"] == "marker")
        chosen = None
        for text in texts:
            try:
                if parse_checkpoint(text)["seq"] == seq:
                    chosen = text
                    break
            except AuditError:
                continue
        if chosen is None and texts:
            chosen = texts[0]
        if markers or len(set(texts)) > 1:
            what = []
            if len(set(texts)) > 1:
                what.append(f"{len(set(texts)) - 1} other version(s)")
            if markers:
                what.append(f"{markers} delete marker(s)")
            msg = f"checkpoint {seq}: its object {key} was overwritten or deleted ({', '.join(what)})"
            return chosen, Finding("checkpoint_overwritten", msg, None, seq)
        return chosen, None

    async def read(self) -> SinkContents:
        out = SinkContents()
        if not await self.object_locked():
            out.notes.append(self._unlocked_note())
        versions, strays = await self._versions()
        for seq in sorted(versions):
            text, finding = await self._contents(seq, versions[seq])
            if finding is not None:
                out.findings.append(finding)
            if text is not None:
                out.lines.append(text)
        for key in strays:
            out.findings.append(
                Finding("checkpoint_malformed", f"unexpected object {key} among the checkpoints")
            )
        if versions:
            self._known_seq = max(self._known_seq, max(versions))
        return out

    async def latest(self) -> str | None:
        versions, _ = await self._versions(after_seq=self._known_seq)
        if not versions and self._known_seq:  # the known one vanished: look at everything
            versions, _ = await self._versions()
        if not versions:
            return None
        seq = max(versions)
        self._known_seq = seq
        text, _ = await self._contents(seq, versions[seq])
        return text

    async def write(self, checkpoint: Mapping[str, Any]) -> None:
        data = canonical_json(dict(checkpoint)) + b"\n"
        seq = int(checkpoint["seq"])
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": checkpoint_key(seq),
            "Body": data,
            "ContentType": "application/json",
            # Object Lock uploads need an integrity header; MD5 is what every server accepts.
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode("ascii"),  # noqa: S324
        }
        if await self.object_locked():
            kw["ObjectLockMode"] = self.lock_mode
            kw["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.lock_days)
        async with self._s3() as s3:
            await s3.put_object(**kw)
        self._known_seq = max(self._known_seq, seq)

    async def close(self) -> None:
        async with self._opening:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

"""Envelope keys: per-track data keys wrapped by a key-encryption key (KEK) from a local key file.

Key file (JSON, mode 0600, its directory 0700 when we create it):

    {"format": 1, "kek_id": "<32 hex>", "current": 2,
     "versions": {"1": {"key": "<base64 32 bytes>", "created_at": "2026-...Z"}, "2": {...}}}

Wrapping is AES-256-GCM under the current version with a random 96-bit nonce; the additional data binds the
KEK id and version and the caller's `context` (`track_key_context(call_id, track)`), so a wrapped key moved
to another track, call or KEK version fails authentication. `WrappedKey.blob` is nonce || ciphertext || tag.
Older versions stay in the file, so keys wrapped under them keep unwrapping; `rewrap_all` moves every stored
track key and per-call transcript text key to the current version without touching media or sealed text
(`worker.key_rotation` adds the TOTP secrets).

Concurrency: creation is exclusive (write a temp file, fsync, hard-link into place: the first creator wins,
others load its file); rotation holds an exclusive `flock` on `<file>.lock`, re-reads the file, and replaces
it atomically (temp + fsync + rename + fsync of the directory). A process notices another's rotation the
next time it wraps (the file's inode changed) or unwraps an unknown version.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from redact.ids import safe_hex_id
from storage.errors import KeyDestroyedError, KeyError_, KeyFileError
from storage.files import fsync_dir
from storage.protocols import CallKeyStore, KeyProvider, TranscriptStore, WrappedKey, format_timestamp
from storage.sealed_text import text_key_context

FORMAT = 1
KEK_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = b"converse/kek-wrap/v1\x00"


def track_key_context(call_id: str, track: int) -> bytes:
    """The wrap context of a track's data key: `call:<id>/track:<n>`."""
    return f"call:{call_id}/track:{track}".encode("ascii")


def new_data_key(length: int = 16) -> bytes:
    """A fresh random data key (16 bytes for the AES-128 SFrame suites, 32 for AES-256)."""
    return secrets.token_bytes(length)


def _aad(kek_id: str, version: int, context: bytes) -> bytes:
    return _AAD_PREFIX + kek_id.encode("utf-8") + b"\x00" + version.to_bytes(4, "big") + context


@dataclass(frozen=True, slots=True)
class _KeyFile:
    kek_id: str
    current: int
    keys: dict[int, bytes]
    created: dict[int, str]
    ino: tuple[int, int]  # (st_dev, st_ino) of the file this was read from

    def to_json(self) -> bytes:
        versions = {
            str(v): {"key": base64.b64encode(k).decode("ascii"), "created_at": self.created[v]}
            for v, k in sorted(self.keys.items())
        }
        doc = {"format": FORMAT, "kek_id": self.kek_id, "current": self.current, "versions": versions}
        return (json.dumps(doc, indent=2) + "\n").encode("ascii")


class LocalKeyFile:
    """KeyProvider backed by a local JSON key file, created on first use. Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._state: _KeyFile | None = None

    # KeyProvider --------------------------------------------------------------------------------------
    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        if not 0 < len(key) <= 64:
            raise ValueError(f"data key must be 1-64 bytes, got {len(key)}")
        state = self._fresh()
        nonce = os.urandom(NONCE_BYTES)
        kek = state.keys[state.current]
        blob = nonce + AESGCM(kek).encrypt(nonce, key, _aad(state.kek_id, state.current, context))
        return WrappedKey(kek_id=state.kek_id, kek_version=state.current, blob=blob)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if not wrapped.blob:
            raise KeyDestroyedError(
                f"wrapped key (KEK {wrapped.kek_id} v{wrapped.kek_version}) was destroyed"
            )
        state = self._loaded()
        if wrapped.kek_id != state.kek_id:
            raise KeyError_(
                f"wrapped key names KEK {wrapped.kek_id!r}, key file {self.path} holds {state.kek_id!r}"
            )
        if wrapped.kek_version not in state.keys:
            state = self._reload()  # another process may have rotated since we loaded
            if wrapped.kek_version not in state.keys:
                raise KeyError_(f"KEK {state.kek_id} has no version {wrapped.kek_version} in {self.path}")
        if len(wrapped.blob) < NONCE_BYTES + TAG_BYTES + 1:
            raise KeyError_(f"wrapped key blob too short ({len(wrapped.blob)} bytes)")
        nonce, sealed = wrapped.blob[:NONCE_BYTES], wrapped.blob[NONCE_BYTES:]
        kek = state.keys[wrapped.kek_version]
        try:
            return AESGCM(kek).decrypt(nonce, sealed, _aad(state.kek_id, wrapped.kek_version, context))
        except InvalidTag:
            raise KeyError_(
                f"wrapped key failed authentication (KEK {state.kek_id} v{wrapped.kek_version}, "
                f"{len(wrapped.blob)} bytes): wrong context or tampered"
            ) from None

    def rotate(self) -> int:
        """Add a new KEK version and make it current; returns the new version number."""
        with self._lock, self._file_lock():
            state = self._read_or_create()
            version = max(state.keys) + 1
            keys = {**state.keys, version: secrets.token_bytes(KEK_BYTES)}
            created = {**state.created, version: format_timestamp(datetime.now(UTC))}
            new = _KeyFile(state.kek_id, version, keys, created, state.ino)
            self._state = self._replace(new)
            return version

    def current(self) -> tuple[str, int]:
        state = self._fresh()
        return state.kek_id, state.current

    def load(self) -> None:
        """Create or load the key file now (call at start, off the event loop, to fail early)."""
        self._loaded()

    # internals ----------------------------------------------------------------------------------------
    def _loaded(self) -> _KeyFile:
        with self._lock:
            if self._state is None:
                self._state = self._read_or_create()
            return self._state

    def _reload(self) -> _KeyFile:
        with self._lock:
            self._state = self._read_or_create()
            return self._state

    def _fresh(self) -> _KeyFile:
        """The loaded state, re-read if the file was replaced (rotated) by another process."""
        state = self._loaded()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise KeyFileError(f"key file {self.path} disappeared") from None
        if (st.st_dev, st.st_ino) != state.ino:
            state = self._reload()
        return state

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        self._ensure_dir()
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _ensure_dir(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)

    def _read_or_create(self) -> _KeyFile:
        try:
            return self._read()
        except FileNotFoundError:
            pass
        self._ensure_dir()
        now = format_timestamp(datetime.now(UTC))
        state = _KeyFile(safe_hex_id(), 1, {1: secrets.token_bytes(KEK_BYTES)}, {1: now}, (0, 0))
        tmp = self._write_temp(state)
        try:
            os.link(tmp, self.path)  # atomic and exclusive: the first creator wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        fsync_dir(self.path.parent)
        return self._read()

    def _read(self) -> _KeyFile:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"key file {self.path} has mode {mode:04o}; it must be owner-only (chmod 600 {self.path})"
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read()
        finally:
            os.close(fd)
        return _parse(self.path, raw, (st.st_dev, st.st_ino))

    def _write_temp(self, state: _KeyFile) -> str:
        tmp = f"{self.path}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, state.to_json())
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def _replace(self, state: _KeyFile) -> _KeyFile:
        tmp = self._write_temp(state)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        return self._read()


def _parse(path: Path, raw: bytes, ino: tuple[int, int]) -> _KeyFile:
    try:
        doc: Any = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise KeyFileError(f"key file {path} has unknown format {doc.get('format')!r}")
        kek_id = str(doc["kek_id"])
        keys: dict[int, bytes] = {}
        created: dict[int, str] = {}
        for v, entry in doc["versions"].items():
            key = base64.b64decode(entry["key"], validate=True)
            if len(key) != KEK_BYTES:
                raise KeyFileError(f"key file {path}: version {v} key is {len(key)} bytes, expected 32")
            keys[int(v)] = key
            created[int(v)] = str(entry["created_at"])
        current = int(doc["current"])
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise KeyFileError(f"key file {path} is not a valid key file") from None
    if current not in keys:
        raise KeyFileError(f"key file {path}: current version {current} has no key")
    return _KeyFile(kek_id, current, keys, created, ino)


@dataclass(frozen=True, slots=True)
class KindReport:
    """One kind of wrapped key after a re-wrap pass."""

    rewrapped: int = 0  # moved to the current version
    unchanged: int = 0  # already under the current version
    skipped: int = 0  # changed or destroyed while we worked (left as they are)

    def __add__(self, other: KindReport) -> KindReport:
        return KindReport(
            self.rewrapped + other.rewrapped, self.unchanged + other.unchanged, self.skipped + other.skipped
        )


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """Per kind ("track": recording keys, "text": per-call transcript keys, and what callers add, such as
    "totp"); the totals are over every kind."""

    kinds: dict[str, KindReport]
    kek_id: str
    version: int

    def _total(self) -> KindReport:
        return sum(self.kinds.values(), KindReport())

    @property
    def rewrapped(self) -> int:
        return self._total().rewrapped

    @property
    def unchanged(self) -> int:
        return self._total().unchanged

    @property
    def skipped(self) -> int:
        return self._total().skipped

    def with_kind(self, kind: str, report: KindReport) -> RewrapReport:
        return RewrapReport({**self.kinds, kind: report}, self.kek_id, self.version)


async def rewrap_all(store: TranscriptStore, provider: KeyProvider) -> RewrapReport:
    """Re-wrap every stored key the KEK wraps in `store` under the provider's current version (media and
    sealed text untouched): track keys, and per-call transcript text keys where the store keeps them.

    Each swap is conditional on the stored key being the one we unwrapped, so a key destroyed by retention
    meanwhile stays destroyed. Run it after `provider.rotate()`; safe to rerun. Unwrapping and wrapping run
    off the event loop (a provider may read its key file or call a KMS).
    """
    kek_id, version = provider.current()
    current = (kek_id, version)

    async def rewrap(old: WrappedKey, context: bytes) -> WrappedKey:
        raw = await asyncio.to_thread(provider.unwrap, old, context)
        return await asyncio.to_thread(provider.wrap, raw, context)

    tracks = KindReport()
    async for ref in store.iter_wrapped_keys():
        if (ref.wrapped.kek_id, ref.wrapped.kek_version) == current:
            tracks += KindReport(unchanged=1)
            continue
        context = track_key_context(ref.call_id, ref.track)
        new = await rewrap(ref.wrapped, context)
        done = await store.replace_wrapped_key(ref.call_id, ref.track, new, expected=ref.wrapped)
        tracks += KindReport(rewrapped=1) if done else KindReport(skipped=1)
    kinds = {"track": tracks}
    if isinstance(store, CallKeyStore):
        texts = KindReport()
        async for key in store.iter_call_keys():
            if (key.wrapped.kek_id, key.wrapped.kek_version) == current:
                texts += KindReport(unchanged=1)
                continue
            new = await rewrap(key.wrapped, text_key_context(key.call_id))
            done = await store.replace_call_key(key.call_id, new, expected=key.wrapped)
            texts += KindReport(rewrapped=1) if done else KindReport(skipped=1)
        kinds["text"] = texts
    return RewrapReport(kinds, kek_id, version)


async def key_versions(store: TranscriptStore) -> dict[str, dict[int, int]]:
    """How many live keys of each kind are wrapped under each KEK version: {"track": {1: 3, 2: 5}, ...}."""
    tracks: Counter[int] = Counter()
    async for ref in store.iter_wrapped_keys():
        tracks[ref.wrapped.kek_version] += 1
    out = {"track": dict(sorted(tracks.items()))}
    if isinstance(store, CallKeyStore):
        texts: Counter[int] = Counter()
        async for key in store.iter_call_keys():
            texts[key.wrapped.kek_version] += 1
        out["text"] = dict(sorted(texts.items()))
    return out

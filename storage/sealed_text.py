"""Transcript text sealed at rest: AES-256-GCM under a per-call data key wrapped by the KEK.

`SealedTranscriptStore(inner, keys)` wraps any store that also keeps call keys (`CallKeyStore`: SQLite,
PostgreSQL). `create_call` makes a random 32-byte data key, wraps it with the KEK under the context
`call:<id>/text` and stores the wrapped key on the call's row. `append_utterance` replaces `text` with

    "s1:" + base64(nonce || AES-GCM(key, nonce, utf8(text), aad))
    aad   = b"converse/text/v1\\0" || call_id || b"\\0" || track (4 bytes) || seq (8 bytes)
    nonce = HMAC-SHA256(nonce_key, aad || utf8(text))[:12]      (a synthetic IV)

so a sealed row moved to another call, track or seq fails authentication, and an identical retry seals to
identical bytes (stores accept identical writes and refuse different ones; the spool replays writes).
A raw dump of the database then shows ids, times, durations and redaction counts, and no transcript text.
`get_utterances` unwraps the call's key from the store on every read (so a destroyed key is honoured at
once, by every pod) and unseals; any failure names the call, track and seq, never text.

Retention destroys the call's text key first (`destroy_call_key`): crypto-shredding, as for track keys.
Write-side data keys are cached in memory (bounded), so utterances can still be sealed, and spooled, while
the database is unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import KeyDestroyedError, StorageError
from storage.protocols import (
    CallInfo,
    CallKey,
    KeyedTranscriptStore,
    KeyProvider,
    OrgSettings,
    TrackInfo,
    TrackKey,
    UtteranceRecord,
    WrappedKey,
    check_call,
    check_utterance,
    validate_call_id,
)

PREFIX = "s1:"
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
CACHE_SIZE = 4096
_AAD = b"converse/text/v1\x00"
_NONCE_LABEL = b"converse/text-nonce/v1"


class SealedTextError(StorageError):
    """A stored utterance text that cannot be unsealed (tampered, moved, or not sealed at all)."""


def text_key_context(call_id: str) -> bytes:
    """The wrap context of a call's text data key: `call:<id>/text`."""
    return f"call:{call_id}/text".encode("ascii")


def is_sealed(text: str) -> bool:
    return text.startswith(PREFIX)


def _aad(call_id: str, track: int, seq: int) -> bytes:
    return _AAD + call_id.encode("ascii") + b"\x00" + track.to_bytes(4, "big") + seq.to_bytes(8, "big")


def seal_text(key: bytes, call_id: str, track: int, seq: int, text: str) -> str:
    aad = _aad(call_id, track, seq)
    plain = text.encode("utf-8")
    nonce_key = hmac.digest(key, _NONCE_LABEL, hashlib.sha256)
    nonce = hmac.digest(nonce_key, aad + plain, hashlib.sha256)[:NONCE_BYTES]
    sealed = nonce + AESGCM(key).encrypt(nonce, plain, aad)
    return PREFIX + base64.b64encode(sealed).decode("ascii")


def unseal_text(key: bytes, call_id: str, track: int, seq: int, stored: str) -> str:
    where = f"utterance {call_id}/{track}/{seq}"
    if not is_sealed(stored):
        raise SealedTextError(f"{where}: stored text is not sealed")
    try:
        raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SealedTextError(f"{where}: sealed text is not valid base64") from None
    if len(raw) < NONCE_BYTES + 16:
        raise SealedTextError(f"{where}: sealed text too short ({len(raw)} bytes)")
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(call_id, track, seq))
    except InvalidTag:
        raise SealedTextError(
            f"{where}: sealed text failed authentication ({len(raw)} bytes): tampered or moved"
        ) from None
    return plain.decode("utf-8")


class TranscriptStoreProxy:
    """Forwards every TranscriptStore and CallKeyStore method to `inner`; wrappers override some."""

    def __init__(self, inner: KeyedTranscriptStore) -> None:
        self.inner = inner

    async def create_call(self, call: CallInfo) -> None:
        await self.inner.create_call(call)

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        await self.inner.end_call(call_id, ended_at, status, reason)

    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        return await self.inner.fail_active_calls(
            ended_at, reason, pod_id=pod_id, started_before=started_before
        )

    async def put_track(self, track: TrackInfo) -> None:
        await self.inner.put_track(track)

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        await self.inner.update_track_counts(
            call_id, track, received=received, sealed=sealed, lost=lost, duration_s=duration_s
        )

    async def get_track(self, call_id: str, track: int) -> TrackInfo:
        return await self.inner.get_track(call_id, track)

    async def list_tracks(self, call_id: str) -> list[TrackInfo]:
        return await self.inner.list_tracks(call_id)

    async def append_utterance(self, utt: UtteranceRecord) -> None:
        await self.inner.append_utterance(utt)

    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]:
        return await self.inner.list_calls(org_id)

    async def get_call(self, call_id: str) -> CallInfo:
        return await self.inner.get_call(call_id)

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        return await self.inner.get_utterances(call_id)

    async def close(self) -> None:
        await self.inner.close()

    async def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        async for key in self.inner.iter_wrapped_keys():
            yield key

    async def replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, *, expected: WrappedKey | None = None
    ) -> bool:
        return await self.inner.replace_wrapped_key(call_id, track, wrapped, expected=expected)

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        return await self.inner.destroy_track_key(call_id, track)

    async def list_calls_ended_before(
        self,
        org_id: str,
        cutoff: datetime,
        *,
        limit: int = 500,
        unended_started_before: datetime | None = None,
    ) -> list[CallInfo]:
        return await self.inner.list_calls_ended_before(
            org_id, cutoff, limit=limit, unended_started_before=unended_started_before
        )

    async def delete_call(self, call_id: str) -> bool:
        return await self.inner.delete_call(call_id)

    async def get_settings(self, org_id: str) -> OrgSettings:
        return await self.inner.get_settings(org_id)

    async def put_settings(self, settings: OrgSettings) -> OrgSettings:
        return await self.inner.put_settings(settings)

    async def list_settings(self) -> list[OrgSettings]:
        return await self.inner.list_settings()

    async def put_call_key(self, call_id: str, wrapped: WrappedKey) -> bool:
        return await self.inner.put_call_key(call_id, wrapped)

    async def get_call_key(self, call_id: str) -> WrappedKey | None:
        return await self.inner.get_call_key(call_id)

    async def destroy_call_key(self, call_id: str) -> bool:
        return await self.inner.destroy_call_key(call_id)

    async def iter_call_keys(self) -> AsyncIterator[CallKey]:
        async for key in self.inner.iter_call_keys():
            yield key

    async def replace_call_key(self, call_id: str, wrapped: WrappedKey, *, expected: WrappedKey) -> bool:
        return await self.inner.replace_call_key(call_id, wrapped, expected=expected)

    async def replace_utterance_text(
        self, call_id: str, track: int, seq: int, *, expected: str, text: str
    ) -> bool:
        return await self.inner.replace_utterance_text(call_id, track, seq, expected=expected, text=text)


class SealedTranscriptStore(TranscriptStoreProxy):
    """Seals utterance text on the way in and unseals it on the way out; everything else passes through."""

    def __init__(
        self, inner: KeyedTranscriptStore, keys: KeyProvider, *, cache_size: int = CACHE_SIZE
    ) -> None:
        super().__init__(inner)
        self.keys = keys
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, call_id: str, key: bytes) -> None:
        self._cache[call_id] = key
        self._cache.move_to_end(call_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _unwrap(self, call_id: str, wrapped: WrappedKey) -> bytes:
        if not wrapped.blob:
            raise KeyDestroyedError(f"call {call_id}: transcript text key was destroyed")
        # A key provider may read its key file (or call a KMS): off the event loop.
        return await asyncio.to_thread(self.keys.unwrap, wrapped, text_key_context(call_id))

    async def _write_key(self, call_id: str) -> bytes:
        """The call's text data key for sealing: cached, else the stored one, else a new one stored now."""
        cached = self._cache.get(call_id)
        if cached is not None:
            return cached
        wrapped = await self.inner.get_call_key(call_id)
        if wrapped is None:
            fresh = secrets.token_bytes(DATA_KEY_BYTES)
            new = await asyncio.to_thread(self.keys.wrap, fresh, text_key_context(call_id))
            if await self.inner.put_call_key(call_id, new):
                self._remember(call_id, fresh)
                return fresh
            wrapped = await self.inner.get_call_key(call_id)  # another writer stored one first
            if wrapped is None:
                raise StorageError(f"call {call_id}: text key vanished while being stored")
        key = await self._unwrap(call_id, wrapped)
        self._remember(call_id, key)
        return key

    async def create_call(self, call: CallInfo) -> None:
        c = check_call(call)
        await self.inner.create_call(c)
        await self._write_key(c.call_id)

    async def append_utterance(self, utt: UtteranceRecord) -> None:
        u = check_utterance(utt)
        key = await self._write_key(u.call_id)
        await self.inner.append_utterance(replace(u, text=seal_text(key, u.call_id, u.track, u.seq, u.text)))

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        validate_call_id(call_id)
        rows = await self.inner.get_utterances(call_id)  # NotFoundError for an unknown call
        if not rows:
            return rows
        wrapped = await self.inner.get_call_key(call_id)
        if wrapped is None:
            raise SealedTextError(f"call {call_id}: has utterances but no transcript text key")
        key = await self._unwrap(call_id, wrapped)
        return [replace(u, text=unseal_text(key, u.call_id, u.track, u.seq, u.text)) for u in rows]

    async def replace_utterance_text(
        self, call_id: str, track: int, seq: int, *, expected: str, text: str
    ) -> bool:
        # Fail closed: passed through, this would store `text` unsealed. Re-sealing uses the inner store.
        raise StorageError("stored text is not replaced through the sealing layer")

    async def destroy_call_key(self, call_id: str) -> bool:
        self._cache.pop(call_id, None)
        return await self.inner.destroy_call_key(call_id)

    async def delete_call(self, call_id: str) -> bool:
        self._cache.pop(call_id, None)
        return await self.inner.delete_call(call_id)

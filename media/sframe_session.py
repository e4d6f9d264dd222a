"""Stateful SFrame (RFC 9605) on top of the stateless core in `media.sframe`.

A sender that never reuses a CTR (it reserves counter blocks durably through a `CounterStore` before using
them, so a crash or restart cannot replay one), a receiver with a key ring by KID and an SRTP-style replay
window, and the section 5.1 sender-key ratchet. Sans-IO: the caller passes `now` where time matters.
"""

from __future__ import annotations

import hmac
import threading
from typing import Protocol

from media.sframe import (
    MAX_VALUE,
    CounterExhaustedError,
    KeyContext,
    MalformedHeaderError,
    SFrameReplayError,
    UnknownKeyIdError,
    hkdf_expand,
    hkdf_extract,
    parse_header,
    suite_params,
)

__all__ = [
    "CounterStore",
    "MemoryCounterStore",
    "SFrameReceiver",
    "SFrameSender",
    "key_fingerprint",
    "ratchet_forward",
    "ratchet_key",
    "ratchet_kid",
    "split_ratchet_kid",
]


# --- Sender with durable counter reservation -------------------------------------------------------------


class CounterStore(Protocol):
    """Durable high-water marks: every CTR below `load()` may have been used and must never be again."""

    def load(self, key_fingerprint: bytes, kid: int) -> int: ...
    def reserve(self, key_fingerprint: bytes, kid: int, upto: int) -> None: ...  # durable on return


class MemoryCounterStore:
    """In-memory `CounterStore` for tests; a new instance over the same dict models a restart."""

    def __init__(self, marks: dict[tuple[bytes, int], int] | None = None) -> None:
        self.marks: dict[tuple[bytes, int], int] = {} if marks is None else marks

    def load(self, key_fingerprint: bytes, kid: int) -> int:
        return self.marks.get((key_fingerprint, kid), 0)

    def reserve(self, key_fingerprint: bytes, kid: int, upto: int) -> None:
        key = (key_fingerprint, kid)
        self.marks[key] = max(upto, self.marks.get(key, 0))


def key_fingerprint(suite: int, base_key: bytes) -> bytes:
    """A non-reversible 16-byte id of a base key (a PRF output keyed by the key), safe to store."""
    return hmac.digest(base_key, b"converse sframe counter id v1" + suite.to_bytes(2, "big"), "sha256")[:16]


class SFrameSender:
    """Protects frames with CTR 0, 1, 2, ... under one (key, KID); reserves `block` CTRs at a time."""

    def __init__(
        self,
        suite: int,
        base_key: bytes,
        kid: int,
        *,
        counter_store: CounterStore | None = None,
        block: int = 256,
    ) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._ctx = KeyContext(suite, base_key, kid)
        self._store: CounterStore = MemoryCounterStore() if counter_store is None else counter_store
        self._fp = key_fingerprint(suite, base_key)
        self._block = block
        self._next = self._limit = self._store.load(self._fp, kid)
        self._lock = threading.Lock()

    @property
    def kid(self) -> int:
        return self._ctx.kid

    @property
    def next_ctr(self) -> int:
        return self._next

    def protect(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        with self._lock:
            ctr = self._next
            if ctr >= self._limit:
                if ctr > MAX_VALUE:
                    raise CounterExhaustedError(f"SFrame KID {self._ctx.kid}: CTR space exhausted")
                upto = min(ctr + self._block, MAX_VALUE + 1)
                self._store.reserve(self._fp, self._ctx.kid, upto)  # durable before any use
                self._limit = upto
            self._next = ctr + 1  # consumed even if sealing fails below: never retried
        return self._ctx.protect(ctr, plaintext, metadata)


# --- Receiver: key ring and replay window ----------------------------------------------------------------


class ReplayWindow:
    """RFC 3711 section 3.3.2 style: highest CTR accepted and a bitmask of the `width` below it."""

    __slots__ = ("highest", "mask", "width")

    def __init__(self, width: int) -> None:
        self.width, self.highest, self.mask = width, -1, 0

    def check(self, kid: int, ctr: int) -> None:
        if ctr > self.highest:
            return
        delta = self.highest - ctr
        if delta >= self.width:
            raise SFrameReplayError(
                f"SFrame KID {kid}: CTR {ctr} is older than the replay window "
                f"(highest {self.highest}, width {self.width})"
            )
        if self.mask >> delta & 1:
            raise SFrameReplayError(f"SFrame KID {kid}: CTR {ctr} already received")

    def accept(self, ctr: int) -> None:
        if ctr > self.highest:
            shift = ctr - self.highest
            self.mask = ((self.mask << shift) | 1) & ((1 << self.width) - 1) if shift < self.width else 1
            self.highest = ctr
        else:
            self.mask |= 1 << (self.highest - ctr)


class SFrameReceiver:
    """Unprotects frames for one suite with keys by KID. Keys may carry `not_after` (a `now` value)."""

    def __init__(self, suite: int, *, window: int = 128) -> None:
        suite_params(suite)
        if window < 1:
            raise ValueError("window must be at least 1")
        self._suite, self._width = suite, window
        self._keys: dict[int, tuple[KeyContext, float | None, ReplayWindow]] = {}

    def add_key(self, kid: int, base_key: bytes, *, not_after: float | None = None) -> None:
        """Install (or replace, with a fresh replay window) the key for `kid`."""
        self._keys[kid] = (KeyContext(self._suite, base_key, kid), not_after, ReplayWindow(self._width))

    def retire_key(self, kid: int, now: float, grace: float) -> None:
        """Keep accepting `kid` for `grace` more seconds (late frames after a rotation), then refuse it."""
        ctx, _, window = self._key(kid)
        self._keys[kid] = (ctx, now + grace, window)

    def remove_key(self, kid: int) -> None:
        self._keys.pop(kid, None)

    def purge(self, now: float) -> list[int]:
        """Drop keys whose grace period has ended; returns their KIDs."""
        gone = [kid for kid, (_, end, _) in self._keys.items() if end is not None and now >= end]
        for kid in gone:
            del self._keys[kid]
        return gone

    def _key(self, kid: int) -> tuple[KeyContext, float | None, ReplayWindow]:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKeyIdError(f"SFrame KID {kid}: no key") from None

    def unprotect(self, data: bytes, metadata: bytes = b"", *, now: float | None = None) -> bytes:
        kid, ctr, hlen = parse_header(data)
        ctx, not_after, window = self._key(kid)
        if not_after is not None:
            if now is None:
                raise ValueError(f"SFrame KID {kid} has an expiry: pass now")
            if now >= not_after:
                raise UnknownKeyIdError(f"SFrame KID {kid}: key expired")
        window.check(kid, ctr)
        plaintext = ctx.unprotect_parsed(ctr, hlen, data, metadata)
        window.accept(ctr)  # only authentic frames move the window
        return plaintext


# --- Sender-key ratchet: RFC 9605 section 5.1 ------------------------------------------------------------


def ratchet_key(suite: int, base_key: bytes) -> bytes:
    """base_key[i+1] = HKDF-Expand(HKDF-Extract("", base_key[i]), "SFrame 1.0 Ratchet", Nh)."""
    p = suite_params(suite)
    return hkdf_expand(p.hash_name, hkdf_extract(p.hash_name, b"", base_key), b"SFrame 1.0 Ratchet", p.nh)


def ratchet_kid(generation: int, ratchet_step: int, r_bits: int) -> int:
    """KID = (key_generation << R) + (ratchet_step % (1 << R))."""
    if not 0 <= r_bits <= 64 or generation < 0 or ratchet_step < 0 or generation >> (64 - r_bits):
        raise MalformedHeaderError(f"sender-key KID: generation does not fit in {64 - r_bits} bits")
    return (generation << r_bits) + (ratchet_step % (1 << r_bits))


def split_ratchet_kid(kid: int, r_bits: int) -> tuple[int, int]:
    """(key_generation, low R bits of the ratchet step) of a sender-key KID."""
    return kid >> r_bits, kid & ((1 << r_bits) - 1)


def ratchet_forward(suite: int, base_key: bytes, step_low: int, target_low: int, r_bits: int) -> bytes:
    """The base key for `target_low`, ratcheting forward from the key at `step_low` (mod 2^R)."""
    key = base_key
    for _ in range((target_low - step_low) % (1 << r_bits)):
        key = ratchet_key(suite, key)
    return key

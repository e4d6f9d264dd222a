"""SFrame, RFC 9605 (https://www.rfc-editor.org/rfc/rfc9605), sans-IO.

Stateless `protect`/`unprotect` (derived keys cached per base key), a sender that never reuses a CTR (it
reserves counter blocks durably through a `CounterStore` before using them), a receiver with a key ring
by KID and an SRTP-style replay window, and the section 5.1 sender-key ratchet. Error messages carry KIDs,
CTRs and lengths only, never plaintext or key bytes.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_VALUE = (1 << 64) - 1  # KID and CTR are at most 8 bytes on the wire (RFC 9605 section 4.3)


class CipherSuite(IntEnum):
    """RFC 9605 section 4.5 / 8.1 registry."""

    AES_128_CTR_HMAC_SHA256_80 = 1
    AES_128_CTR_HMAC_SHA256_64 = 2
    AES_128_CTR_HMAC_SHA256_32 = 3
    AES_128_GCM_SHA256_128 = 4
    AES_256_GCM_SHA512_128 = 5


@dataclass(frozen=True, slots=True)
class SuiteParams:
    hash_name: str
    nh: int  # hash output length
    nka: int  # AES key length inside the AEAD key (CTR suites); 0 for GCM
    nk: int  # AEAD key length
    nt: int  # tag length
    nn: int = 12  # nonce length


SUITES: dict[int, SuiteParams] = {
    1: SuiteParams("sha256", 32, 16, 48, 10),
    2: SuiteParams("sha256", 32, 16, 48, 8),
    3: SuiteParams("sha256", 32, 16, 48, 4),
    4: SuiteParams("sha256", 32, 0, 16, 16),
    5: SuiteParams("sha512", 64, 0, 32, 16),
}


class SFrameError(Exception):
    """Base of every SFrame failure."""


class SFrameAuthError(SFrameError):
    """The frame failed authentication (wrong key, tampered bytes or metadata)."""


class SFrameReplayError(SFrameError):
    """The receiver already accepted this CTR, or it is older than the replay window."""


class UnknownKeyIdError(SFrameError):
    """No key for the frame's KID (never added, removed, or expired)."""


class MalformedHeaderError(SFrameError):
    """The SFrame header cannot be decoded, or a KID/CTR cannot be encoded."""


class CounterExhaustedError(SFrameError):
    """The sender's CTR space for this key and KID is used up."""


def suite_params(suite: int) -> SuiteParams:
    try:
        return SUITES[suite]
    except KeyError:
        raise SFrameError(f"unknown SFrame cipher suite {suite}") from None


# --- Header: RFC 9605 section 4.3 ----------------------------------------------------------------------


def _field(value: int, what: str) -> tuple[int, bytes]:
    """(3-bit config value, extension bytes) for a KID or CTR; bit 3 of the value is the X/Y flag."""
    if value < 8:
        if value < 0:
            raise MalformedHeaderError(f"SFrame {what} must be non-negative")
        # RFC 9605 section 4.3: values 0-7 sit in the 3 config bits, X/Y = 0, no extension bytes.
        return value, b""
    if value > MAX_VALUE:
        raise MalformedHeaderError(f"SFrame {what} does not fit in 8 bytes")
    # RFC 9605 section 4.3: X/Y = 1, the 3 bits hold (length - 1) of the minimal big-endian encoding.
    n = (value.bit_length() + 7) >> 3
    return 0x8 | (n - 1), value.to_bytes(n, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    k, kid_bytes = _field(kid, "KID")
    c, ctr_bytes = _field(ctr, "CTR")
    # RFC 9605 section 4.3: config byte X|K(3)|Y|C(3), then KID bytes, then CTR bytes.
    return bytes(((k << 4) | c,)) + kid_bytes + ctr_bytes


def parse_header(data: bytes) -> tuple[int, int, int]:
    """Decode an SFrame header: (kid, ctr, header length). Non-minimal encodings are accepted; the AAD
    covers the header bytes as sent, so they cannot be altered without failing authentication."""
    if not data:
        raise MalformedHeaderError("SFrame header: empty frame")
    config = data[0]
    pos = 1
    # RFC 9605 section 4.3: X bit clear -> K is the KID itself; set -> K+1 KID bytes follow.
    if config & 0x80:
        n = ((config >> 4) & 0x7) + 1
        if len(data) < pos + n:
            raise MalformedHeaderError(f"SFrame header: KID needs {n} bytes, {len(data) - pos} present")
        kid = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        kid = (config >> 4) & 0x7
    # RFC 9605 section 4.3: Y bit clear -> C is the CTR itself; set -> C+1 CTR bytes follow the KID.
    if config & 0x08:
        n = (config & 0x7) + 1
        if len(data) < pos + n:
            raise MalformedHeaderError(f"SFrame header: CTR needs {n} bytes, {len(data) - pos} present")
        ctr = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        ctr = config & 0x7
    return kid, ctr, pos


# --- Key schedule: RFC 9605 section 4.4.2 (HKDF, RFC 5869) -------------------------------------------


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((i,)), hash_name)
        out += block
        i += 1
    return out[:length]


def key_label(kid: int, suite: int) -> bytes:
    return b"SFrame 1.0 Secret key " + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")


def salt_label(kid: int, suite: int) -> bytes:
    return b"SFrame 1.0 Secret salt " + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")


def derive_key_salt(suite: int, base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """(sframe_key, sframe_salt) for one KID: HKDF-Extract with an empty salt, then two Expands."""
    p = suite_params(suite)
    secret = hkdf_extract(p.hash_name, b"", base_key)
    return (
        hkdf_expand(p.hash_name, secret, key_label(kid, suite), p.nk),
        hkdf_expand(p.hash_name, secret, salt_label(kid, suite), p.nn),
    )


def make_nonce(salt: bytes, ctr: int) -> bytes:
    # RFC 9605 section 4.4.3 with errata 8321: nonce = salt XOR encode_big_endian(CTR, Nn).
    return (int.from_bytes(salt, "big") ^ ctr).to_bytes(len(salt), "big")


# --- AEAD: RFC 9605 section 4.5 -------------------------------------------------------------------------

Seal = Callable[[bytes, bytes, bytes], bytes]  # (nonce, plaintext, aad) -> ciphertext || tag


class CtrHmac:
    """AES-CTR + truncated HMAC (RFC 9605 section 4.5.1): key = enc_key (Nka) || auth_key."""

    __slots__ = ("_aes", "_auth", "_hash", "_nt")

    def __init__(self, suite: int, key: bytes) -> None:
        p = suite_params(suite)
        self._aes = algorithms.AES(key[: p.nka])
        self._auth, self._hash, self._nt = key[p.nka :], p.hash_name, p.nt

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        lengths = len(aad).to_bytes(8, "big") + len(ct).to_bytes(8, "big") + self._nt.to_bytes(8, "big")
        return hmac.digest(self._auth, lengths + nonce + aad + ct, self._hash)[: self._nt]

    def _ctr(self, nonce: bytes, data: bytes) -> bytes:
        # Initial counter block = nonce || 0x00000000 (RFC 9605 section 4.5.1).
        ctx = Cipher(self._aes, modes.CTR(nonce + b"\x00\x00\x00\x00")).encryptor()
        return ctx.update(data) + ctx.finalize()

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        ct = self._ctr(nonce, plaintext)
        return ct + self._tag(nonce, aad, ct)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < self._nt:
            raise InvalidTag
        ct, tag = data[: -self._nt], data[-self._nt :]
        if not hmac.compare_digest(tag, self._tag(nonce, aad, ct)):
            raise InvalidTag
        return self._ctr(nonce, ct)


class KeyContext:
    """Derived key material for one (suite, base_key, KID), with the AEAD object built once."""

    __slots__ = ("kid", "open", "prefix", "salt", "seal", "small", "suite")

    def __init__(self, suite: int, base_key: bytes, kid: int) -> None:
        if not 0 <= kid <= MAX_VALUE:
            raise MalformedHeaderError("SFrame KID does not fit in 8 bytes")
        key, salt = derive_key_salt(suite, base_key, kid)
        aead: AESGCM | CtrHmac = CtrHmac(suite, key) if SUITES[suite].nka else AESGCM(key)
        self.suite, self.kid, self.salt = suite, kid, int.from_bytes(salt, "big")
        self.seal: Seal = aead.encrypt
        self.open: Seal = aead.decrypt
        # Header bytes precomputed: `small[ctr]` for CTR 0-7, `prefix[n]` + n CTR bytes otherwise.
        k, kid_bytes = _field(kid, "KID")
        self.small = [bytes(((k << 4) | c,)) + kid_bytes for c in range(8)]
        self.prefix = [b""] + [bytes(((k << 4) | 0x8 | (n - 1),)) + kid_bytes for n in range(1, 9)]

    def protect(self, ctr: int, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """RFC 9605 section 4.4.3 encrypt(): header || AEAD.Encrypt(key, nonce, header || metadata, pt)."""
        # RFC 9605 section 4.3 header (as `encode_header`, precomputed), section 4.4.3 nonce and AAD.
        if 7 < ctr <= MAX_VALUE:
            n = (ctr.bit_length() + 7) >> 3
            header = self.prefix[n] + ctr.to_bytes(n, "big")
        elif 0 <= ctr < 8:
            header = self.small[ctr]
        else:
            raise CounterExhaustedError(f"SFrame KID {self.kid}: CTR {ctr} outside 0..2^64-1")
        aad = header + metadata if metadata else header
        return header + self.seal((self.salt ^ ctr).to_bytes(12, "big"), plaintext, aad)

    def unprotect_parsed(self, ctr: int, hlen: int, data: bytes, metadata: bytes = b"") -> bytes:
        """RFC 9605 section 4.4.4 decrypt() once the header is parsed: AAD = header bytes as received."""
        try:
            return self.open((self.salt ^ ctr).to_bytes(12, "big"), data[hlen:], data[:hlen] + metadata)
        except InvalidTag as exc:
            raise SFrameAuthError(f"SFrame KID {self.kid} CTR {ctr}: authentication failed") from exc


# Stateless API cache: the HKDF runs once per (suite, base_key, KID). Bounded, so base keys of ended
# tracks do not stay in memory indefinitely; `forget_keys()` drops them all at once.
_CACHE: dict[tuple[int, bytes, int], KeyContext] = {}
_CACHE_MAX = 256


def key_context(suite: int, base_key: bytes, kid: int) -> KeyContext:
    ctx = _CACHE.get((suite, base_key, kid))
    if ctx is None:
        suite_params(suite)
        ctx = KeyContext(suite, base_key, kid)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE), (0, b"", 0)), None)
        _CACHE[(suite, base_key, kid)] = ctx
    return ctx


def forget_keys() -> None:
    _CACHE.clear()


def protect(
    suite: int, base_key: bytes, kid: int, ctr: int, plaintext: bytes, metadata: bytes = b""
) -> bytes:
    ctx = _CACHE.get((suite, base_key, kid)) or key_context(suite, base_key, kid)
    return ctx.protect(ctr, plaintext, metadata)


def unprotect(suite: int, base_key: bytes, ciphertext: bytes, metadata: bytes = b"") -> bytes:
    kid, ctr, hlen = parse_header(ciphertext)
    ctx = _CACHE.get((suite, base_key, kid)) or key_context(suite, base_key, kid)
    return ctx.unprotect_parsed(ctr, hlen, ciphertext, metadata)


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


class _ReplayWindow:
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
        self._keys: dict[int, tuple[KeyContext, float | None, _ReplayWindow]] = {}

    def add_key(self, kid: int, base_key: bytes, *, not_after: float | None = None) -> None:
        """Install (or replace, with a fresh replay window) the key for `kid`."""
        self._keys[kid] = (KeyContext(self._suite, base_key, kid), not_after, _ReplayWindow(self._width))

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

    def _key(self, kid: int) -> tuple[KeyContext, float | None, _ReplayWindow]:
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

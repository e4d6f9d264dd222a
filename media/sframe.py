"""SFrame, RFC 9605 (https://www.rfc-editor.org/rfc/rfc9605): the stateless, sans-IO core.

Header encoding, the HKDF key schedule, the five cipher suites, and `protect`/`unprotect` (derived keys
cached per (suite, base key, KID)). The stateful sender (durable CTR reservation), the receiver (key ring,
replay window) and the section 5.1 ratchet live in `media.sframe_session`; their names are re-exported
here lazily. Error messages carry KIDs, CTRs and lengths only, never plaintext or key bytes.

Hot path notes (per-frame cost is what the benchmark measures): the header bytes for CTR 0-7 are
precomputed and larger CTRs are one `int.to_bytes` of a per-KID template; `int.to_bytes`/`from_bytes`
use the default big-endian byte order (Python 3.11+) because the keyword costs a string compare per call.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as hmac_
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


_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA512]] = {"sha256": hashes.SHA256, "sha512": hashes.SHA512}
_COUNTER_BLOCKS: dict[int, list[bytes]] = {}
_LENGTHS_NONCE = struct.Struct(">QQQ12s")  # len(AAD), len(CT), tag length, nonce: RFC 9605 section 4.5.1


def _counter_blocks(n: int) -> list[bytes]:
    """[b"", 0, 1, ..., n-1 as 4-byte big-endian]: `nonce.join()` of it is nonce||0||nonce||1||..."""
    blocks = _COUNTER_BLOCKS.get(n)
    if blocks is None:
        blocks = [b""] + [i.to_bytes(4) for i in range(n)]
        if n <= 4096:  # frames up to 64 KiB; larger ones rebuild the list (rare, and O(n) anyway)
            _COUNTER_BLOCKS[n] = blocks
    return blocks


class CtrHmac:
    """AES-CTR + truncated HMAC (RFC 9605 section 4.5.1): key = enc_key (Nka) || auth_key."""

    __slots__ = ("_ecb", "_mac", "_nt")

    def __init__(self, suite: int, key: bytes) -> None:
        p = suite_params(suite)
        # CTR keystream = AES over the counter blocks. One reusable ECB context encrypts all of a frame's
        # blocks in one call, instead of building a CTR cipher per frame (5x faster for audio frames).
        # ECB is safe here: its inputs are distinct counter blocks, exactly what CTR mode encrypts.
        self._ecb = Cipher(algorithms.AES(key[: p.nka]), modes.ECB()).encryptor().update  # noqa: S305
        # HMAC keyed once; per frame a copy of the keyed state, one update and one finalize (three calls
        # into cryptography's Rust layer; hmac.digest() re-keys and re-fetches the hash, 2.5x slower).
        self._mac = hmac_.HMAC(key[p.nka :], _HASHES[p.hash_name]())
        self._nt = p.nt

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        # RFC 9605 section 4.5.1: HMAC(auth_key, len(AAD) || len(CT) || Nt (8 bytes each) || nonce || AAD
        # || CT), truncated to Nt.
        mac = self._mac.copy()
        mac.update(b"".join((_LENGTHS_NONCE.pack(len(aad), len(ct), self._nt, nonce), aad, ct)))
        return mac.finalize()[: self._nt]

    def _xor_keystream(self, nonce: bytes, data: bytes) -> bytes:
        # RFC 9605 section 4.5.1: counter blocks nonce || i (32-bit big-endian, from 0), all encrypted in
        # one call; the XOR runs on two ints (one C operation) rather than per byte.
        size = len(data)
        if not size:
            return b""
        stream = self._ecb(nonce.join(_counter_blocks((size + 15) >> 4)))
        return (int.from_bytes(data) ^ int.from_bytes(stream[:size])).to_bytes(size)

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        ct = self._xor_keystream(nonce, plaintext)
        return ct + self._tag(nonce, aad, ct)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        nt = self._nt
        if len(data) < nt:
            raise InvalidTag
        ct = data[:-nt]
        if not hmac.compare_digest(data[-nt:], self._tag(nonce, aad, ct)):
            raise InvalidTag
        return self._xor_keystream(nonce, ct)


class KeyContext:
    """Derived key material for one (suite, base_key, KID), with the AEAD object built once."""

    __slots__ = ("base", "kid", "open", "salt", "seal", "small", "suite", "tmpl")

    def __init__(self, suite: int, base_key: bytes, kid: int) -> None:
        if not 0 <= kid <= MAX_VALUE:
            raise MalformedHeaderError("SFrame KID does not fit in 8 bytes")
        key, salt = derive_key_salt(suite, base_key, kid)
        aead: AESGCM | CtrHmac = CtrHmac(suite, key) if SUITES[suite].nka else AESGCM(key)
        self.suite, self.kid, self.salt = suite, kid, int.from_bytes(salt)
        self.seal: Seal = aead.encrypt  # bound once: no attribute lookup on the AEAD per frame
        self.open: Seal = aead.decrypt
        # Header precomputed: `small[ctr]` for CTR 0-7; else (tmpl[n] | ctr).to_bytes(base + n) where n is
        # the CTR's byte length and tmpl[n] holds the config byte and KID bytes above the CTR bytes.
        k, kid_bytes = _field(kid, "KID")
        self.small = [bytes(((k << 4) | c,)) + kid_bytes for c in range(8)]
        self.base = 1 + len(kid_bytes)
        self.tmpl = [0] + [
            int.from_bytes(bytes(((k << 4) | 0x8 | (n - 1),)) + kid_bytes) << (8 * n) for n in range(1, 9)
        ]

    def protect(self, ctr: int, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """RFC 9605 section 4.4.3 encrypt(): header || AEAD.Encrypt(key, nonce, header || metadata, pt)."""
        # RFC 9605 section 4.3 header (as `encode_header`, precomputed), section 4.4.3 nonce and AAD.
        if ctr > 7:
            if ctr > MAX_VALUE:
                raise CounterExhaustedError(f"SFrame KID {self.kid}: CTR {ctr} outside 0..2^64-1")
            n = (ctr.bit_length() + 7) >> 3
            header = (self.tmpl[n] | ctr).to_bytes(self.base + n)
        elif ctr >= 0:
            header = self.small[ctr]
        else:
            raise CounterExhaustedError(f"SFrame KID {self.kid}: CTR {ctr} outside 0..2^64-1")
        return header + self.seal((self.salt ^ ctr).to_bytes(12), plaintext, header + metadata)

    def unprotect_parsed(self, ctr: int, hlen: int, data: bytes, metadata: bytes = b"") -> bytes:
        """RFC 9605 section 4.4.4 decrypt() once the header is parsed: AAD = header bytes as received."""
        try:
            return self.open((self.salt ^ ctr).to_bytes(12), data[hlen:], data[:hlen] + metadata)
        except InvalidTag as exc:
            raise SFrameAuthError(f"SFrame KID {self.kid} CTR {ctr}: authentication failed") from exc


# Stateless API cache: the HKDF runs once per (suite, base_key, KID). Bounded, so base keys of ended
# tracks do not stay in memory indefinitely; `forget_keys()` drops them all at once. `_BY_KEY` holds the
# context last used with each base key: a lookup by the key bytes alone (their hash is cached by the
# bytes object) and two int compares cost a third of building and hashing a (suite, key, KID) tuple.
_CACHE: dict[tuple[int, bytes, int], KeyContext] = {}
_BY_KEY: dict[bytes, KeyContext] = {}
_CACHE_MAX = 256


def key_context(suite: int, base_key: bytes, kid: int) -> KeyContext:
    ctx = _CACHE.get((suite, base_key, kid))
    if ctx is None:
        suite_params(suite)
        ctx = KeyContext(suite, base_key, kid)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE), (0, b"", 0)), None)
        _CACHE[(suite, base_key, kid)] = ctx
    if base_key not in _BY_KEY and len(_BY_KEY) >= _CACHE_MAX:
        _BY_KEY.pop(next(iter(_BY_KEY), b""), None)
    _BY_KEY[base_key] = ctx
    return ctx


def forget_keys() -> None:
    _CACHE.clear()
    _BY_KEY.clear()


def protect(
    suite: int, base_key: bytes, kid: int, ctr: int, plaintext: bytes, metadata: bytes = b""
) -> bytes:
    """RFC 9605 section 4.4.3 encrypt() for one frame: header || ciphertext || tag."""
    try:
        ctx = _BY_KEY[base_key]  # a subscript: specialised bytecode, ~100 ns less than `.get()` here
    except KeyError:
        ctx = key_context(suite, base_key, kid)
    if ctx.kid != kid or ctx.suite != suite:
        ctx = key_context(suite, base_key, kid)
    # Same steps as KeyContext.protect, inlined: this is the per-frame hot path (a call costs ~8%).
    if ctr > 7:
        if ctr > MAX_VALUE:
            raise CounterExhaustedError(f"SFrame KID {kid}: CTR {ctr} outside 0..2^64-1")
        n = (ctr.bit_length() + 7) >> 3
        header = (ctx.tmpl[n] | ctr).to_bytes(ctx.base + n)
    elif ctr >= 0:
        header = ctx.small[ctr]
    else:
        raise CounterExhaustedError(f"SFrame KID {kid}: CTR {ctr} outside 0..2^64-1")
    # `header + b""` is `header` itself (CPython returns the non-empty operand): no copy without metadata.
    return header + ctx.seal((ctx.salt ^ ctr).to_bytes(12), plaintext, header + metadata)


def unprotect(suite: int, base_key: bytes, ciphertext: bytes, metadata: bytes = b"") -> bytes:
    """RFC 9605 section 4.4.4 decrypt(): parse the header, derive (or reuse) the KID's key, open."""
    # RFC 9605 section 4.3 fast path, same result as `parse_header`: X = 0 (KID 0-7 in the config byte)
    # and Y = 1 (C+1 CTR bytes follow), the shape of every frame past CTR 7 from a small KID.
    config = ciphertext[0] if ciphertext else 0
    hlen = (config & 0x7) + 2
    if config & 0x88 == 0x08 and len(ciphertext) >= hlen:
        kid, ctr = config >> 4, int.from_bytes(ciphertext[1:hlen])
    else:
        kid, ctr, hlen = parse_header(ciphertext)
    try:
        ctx = _BY_KEY[base_key]
    except KeyError:
        ctx = key_context(suite, base_key, kid)
    if ctx.kid != kid or ctx.suite != suite:
        ctx = key_context(suite, base_key, kid)
    try:
        return ctx.open((ctx.salt ^ ctr).to_bytes(12), ciphertext[hlen:], ciphertext[:hlen] + metadata)
    except InvalidTag as exc:
        raise SFrameAuthError(f"SFrame KID {kid} CTR {ctr}: authentication failed") from exc


# --- Stateful layer, re-exported lazily from `media.sframe_session` ------------------------------------
# A plain `from media.sframe_session import ...` here would fail whenever `media.sframe_session` is
# imported first (it imports this module, which would import it back half-initialised), so the names
# resolve on first access through a module `__getattr__` (PEP 562).

_SESSION_NAMES = frozenset(
    "CounterStore MemoryCounterStore SFrameReceiver SFrameSender key_fingerprint ratchet_forward ratchet_key "
    "ratchet_kid split_ratchet_kid".split()
)

if TYPE_CHECKING:
    from media.sframe_session import CounterStore as CounterStore
    from media.sframe_session import MemoryCounterStore as MemoryCounterStore
    from media.sframe_session import SFrameReceiver as SFrameReceiver
    from media.sframe_session import SFrameSender as SFrameSender
    from media.sframe_session import key_fingerprint as key_fingerprint
    from media.sframe_session import ratchet_forward as ratchet_forward
    from media.sframe_session import ratchet_key as ratchet_key
    from media.sframe_session import ratchet_kid as ratchet_kid
    from media.sframe_session import split_ratchet_kid as split_ratchet_kid


def __getattr__(name: str) -> object:
    if name in _SESSION_NAMES:
        from media import sframe_session

        value: object = getattr(sframe_session, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Properties of media.sframe: round trips, tamper detection, counters, replay window, exact messages."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from media import sframe
from media.sframe import CipherSuite

SUITES = st.sampled_from(list(CipherSuite))
U64 = st.integers(0, sframe.MAX_VALUE)
KEYS = st.binary(min_size=16, max_size=64)
MARK = b"PLAINTEXT-CANARY"


@given(SUITES, KEYS, U64, U64, st.binary(max_size=300), st.binary(max_size=40))
def test_round_trip(suite: CipherSuite, key: bytes, kid: int, ctr: int, pt: bytes, meta: bytes) -> None:
    ct = sframe.protect(suite, key, kid, ctr, pt, meta)
    assert sframe.parse_header(ct)[:2] == (kid, ctr)
    assert len(ct) == sframe.parse_header(ct)[2] + len(pt) + sframe.suite_params(suite).nt
    assert sframe.unprotect(suite, key, ct, meta) == pt
    assert sframe.unprotect(int(suite), key, ct, meta) == pt


@given(SUITES, KEYS, U64, U64, st.binary(max_size=200), st.binary(max_size=20), st.data())
def test_any_flipped_bit_fails(
    suite: CipherSuite, key: bytes, kid: int, ctr: int, pt: bytes, meta: bytes, data: st.DataObject
) -> None:
    ct = bytearray(sframe.protect(suite, key, kid, ctr, pt, meta))
    bit = data.draw(st.integers(0, len(ct) * 8 - 1))
    ct[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((sframe.SFrameAuthError, sframe.MalformedHeaderError)):
        sframe.unprotect(suite, key, bytes(ct), meta)


@given(SUITES, KEYS)
def test_key_schedule_matches_cryptography_hkdf(suite: CipherSuite, key: bytes) -> None:
    p = sframe.suite_params(suite)
    algo = hashes.SHA256() if p.hash_name == "sha256" else hashes.SHA512()

    def hkdf(info: bytes, n: int) -> bytes:
        return HKDF(algorithm=algo, length=n, salt=None, info=info).derive(key)

    assert sframe.derive_key_salt(suite, key, 9) == (
        hkdf(sframe.key_label(9, suite), p.nk),
        hkdf(sframe.salt_label(9, suite), p.nn),
    )
    assert sframe.ratchet_key(suite, key) == hkdf(b"SFrame 1.0 Ratchet", p.nh)


def test_auth_error_wraps_invalid_tag_and_is_exact() -> None:
    ct = bytearray(sframe.protect(4, b"k" * 16, 300, 70000, MARK))
    ct[-1] ^= 1
    with pytest.raises(sframe.SFrameAuthError) as info:
        sframe.unprotect(4, b"k" * 16, bytes(ct))
    assert str(info.value) == "SFrame KID 300 CTR 70000: authentication failed"
    assert isinstance(info.value.__cause__, InvalidTag)
    assert issubclass(sframe.SFrameAuthError, sframe.SFrameError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "SFrame header: empty frame"),
        (b"\x90", "SFrame header: KID needs 2 bytes, 0 present"),
        (b"\x8b\x01\x00", "SFrame header: CTR needs 4 bytes, 1 present"),
    ],
)
def test_malformed_header_messages(data: bytes, message: str) -> None:
    with pytest.raises(sframe.MalformedHeaderError) as info:
        sframe.parse_header(data)
    assert str(info.value) == message


def test_encode_limits() -> None:
    with pytest.raises(sframe.MalformedHeaderError, match=r"^SFrame KID does not fit in 8 bytes$"):
        sframe.encode_header(1 << 64, 0)
    with pytest.raises(sframe.CounterExhaustedError, match=r"^SFrame KID 1: CTR -1 outside 0\.\.2\^64-1$"):
        sframe.protect(4, b"k" * 16, 1, -1, b"x")
    with pytest.raises(sframe.SFrameError, match=r"^unknown SFrame cipher suite 9$"):
        sframe.protect(9, b"k" * 16, 1, 1, b"x")


@settings(max_examples=50)
@given(st.integers(1, 40), st.integers(1, 120), st.integers(0, 120))
def test_sender_never_reuses_ctr_across_restarts(block: int, first_run: int, second_run: int) -> None:
    store = sframe.MemoryCounterStore()
    key = b"s" * 16
    sender = sframe.SFrameSender(4, key, 5, counter_store=store, block=block)
    ctrs = [sframe.parse_header(sender.protect(b"f"))[1] for _ in range(first_run)]
    assert ctrs == list(range(first_run))
    fp = sframe.key_fingerprint(4, key)
    reserved = store.load(fp, 5)
    assert reserved >= first_run and reserved % block == 0  # reserved before use, a block at a time
    # "Restart": a new sender over the same durable store resumes above the last reserved block.
    again = sframe.SFrameSender(4, key, 5, counter_store=sframe.MemoryCounterStore(store.marks), block=block)
    later = [sframe.parse_header(again.protect(b"f"))[1] for _ in range(second_run)]
    assert later == list(range(reserved, reserved + second_run))
    assert not set(ctrs) & set(later)


def test_fingerprint_is_not_the_key() -> None:
    key = bytes(range(16))
    fp = sframe.key_fingerprint(4, key)
    assert len(fp) == 16 and key not in fp and fp != sframe.key_fingerprint(5, key)


class FailingStore(sframe.MemoryCounterStore):
    def reserve(self, key_fingerprint: bytes, kid: int, upto: int) -> None:
        raise OSError("disk full")


def test_sender_seals_nothing_without_a_durable_reservation() -> None:
    sender = sframe.SFrameSender(4, b"k" * 16, 1, counter_store=FailingStore())
    with pytest.raises(OSError, match="disk full"):
        sender.protect(b"frame")
    assert sender.next_ctr == 0


def test_sender_counter_exhaustion() -> None:
    key = b"k" * 16
    store = sframe.MemoryCounterStore({(sframe.key_fingerprint(4, key), 2): sframe.MAX_VALUE})
    sender = sframe.SFrameSender(4, key, 2, counter_store=store)
    assert sframe.parse_header(sender.protect(b"last"))[1] == sframe.MAX_VALUE
    with pytest.raises(sframe.CounterExhaustedError, match=r"^SFrame KID 2: CTR space exhausted$"):
        sender.protect(b"one too many")


@settings(max_examples=50)
@given(st.permutations(list(range(40))), st.lists(st.integers(0, 39), max_size=10))
def test_receiver_accepts_each_ctr_once(order: list[int], replays: list[int]) -> None:
    frames = [sframe.protect(4, b"r" * 16, 7, ctr, b"audio") for ctr in range(40)]
    rx = sframe.SFrameReceiver(4, window=64)
    rx.add_key(7, b"r" * 16)
    for ctr in order:
        assert rx.unprotect(frames[ctr]) == b"audio"
    for ctr in replays:
        with pytest.raises(sframe.SFrameReplayError, match=f"^SFrame KID 7: CTR {ctr} already received$"):
            rx.unprotect(frames[ctr])


def test_receiver_window_edges() -> None:
    key = b"r" * 16
    rx = sframe.SFrameReceiver(4, window=128)
    rx.add_key(1, key)
    rx.unprotect(sframe.protect(4, key, 1, 500, b"x"))
    rx.unprotect(sframe.protect(4, key, 1, 373, b"x"))  # 127 behind: inside the window
    with pytest.raises(sframe.SFrameReplayError) as info:
        rx.unprotect(sframe.protect(4, key, 1, 372, b"x"))
    assert str(info.value) == "SFrame KID 1: CTR 372 is older than the replay window (highest 500, width 128)"
    # A forged frame must not advance the window.
    forged = bytearray(sframe.protect(4, key, 1, 10_000, b"x"))
    forged[-1] ^= 1
    with pytest.raises(sframe.SFrameAuthError):
        rx.unprotect(bytes(forged))
    assert rx.unprotect(sframe.protect(4, key, 1, 501, b"y")) == b"y"


def test_receiver_key_ring_and_grace() -> None:
    old, new = b"o" * 16, b"n" * 16
    rx = sframe.SFrameReceiver(5)
    rx.add_key(1, old)
    rx.add_key(2, new)
    with pytest.raises(sframe.UnknownKeyIdError, match=r"^SFrame KID 3: no key$"):
        rx.unprotect(sframe.protect(5, new, 3, 0, b"x"))
    rx.retire_key(1, now=100.0, grace=2.0)
    assert rx.unprotect(sframe.protect(5, old, 1, 0, b"late"), now=101.0) == b"late"
    with pytest.raises(sframe.UnknownKeyIdError, match=r"^SFrame KID 1: key expired$"):
        rx.unprotect(sframe.protect(5, old, 1, 1, b"too late"), now=102.0)
    assert rx.purge(now=102.0) == [1]
    rx.remove_key(2)
    with pytest.raises(sframe.UnknownKeyIdError, match=r"^SFrame KID 2: no key$"):
        rx.unprotect(sframe.protect(5, new, 2, 0, b"x"))


@given(SUITES, st.binary(min_size=8, max_size=64))
def test_no_plaintext_or_key_in_messages(suite: CipherSuite, secret: bytes) -> None:
    key = b"KEYMATERIAL-" + secret
    ct = bytearray(sframe.protect(suite, key, 11, 12, MARK + secret))
    ct[-1] ^= 0xFF
    rx = sframe.SFrameReceiver(suite)
    rx.add_key(11, key)
    for call in (lambda: sframe.unprotect(suite, key, bytes(ct)), lambda: rx.unprotect(bytes(ct))):
        with pytest.raises(sframe.SFrameError) as info:
            call()
        text = f"{info.value!s} {info.value!r}"
        assert "CANARY" not in text and "KEYMATERIAL" not in text and secret.hex() not in text


@given(st.integers(0, (1 << 56) - 1), st.integers(0, 10_000), st.integers(1, 8))
def test_ratchet_kid_split(generation: int, step: int, r_bits: int) -> None:
    kid = sframe.ratchet_kid(generation, step, r_bits)
    assert sframe.split_ratchet_kid(kid, r_bits) == (generation, step % (1 << r_bits))


def test_ratchet_forward_and_receive() -> None:
    base = b"b" * 32
    step3 = sframe.ratchet_key(4, sframe.ratchet_key(4, sframe.ratchet_key(4, base)))
    assert len(step3) == 32 and step3 != base
    # R = 2: step 3 then step 5 (low bits 3 -> 1) wraps around the 2-bit window.
    assert sframe.ratchet_forward(4, base, 0, 3, 2) == step3
    step5 = sframe.ratchet_key(4, sframe.ratchet_key(4, step3))
    assert sframe.ratchet_forward(4, step3, 3, 1, 2) == step5
    kid = sframe.ratchet_kid(generation=6, ratchet_step=5, r_bits=2)
    rx = sframe.SFrameReceiver(4)
    gen, low = sframe.split_ratchet_kid(kid, 2)
    rx.add_key(kid, sframe.ratchet_forward(4, step3, 3, low, 2))
    assert gen == 6 and rx.unprotect(sframe.protect(4, step5, kid, 0, b"fresh")) == b"fresh"
    with pytest.raises(sframe.MalformedHeaderError):
        sframe.ratchet_kid(1 << 62, 0, 2)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=12, max_size=12), st.binary(max_size=2000))
def test_ctr_keystream_matches_aes_ctr(enc_key: bytes, nonce: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    aead = sframe.CtrHmac(1, enc_key + bytes(32))
    ctx = Cipher(algorithms.AES(enc_key), modes.CTR(nonce + bytes(4))).encryptor()
    expected = ctx.update(data) + ctx.finalize()
    assert aead.encrypt(nonce, data, b"")[: len(data)] == expected

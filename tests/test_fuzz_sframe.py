"""Fuzz SFrame (RFC 9605): the header parser, stateless `unprotect` and the stateful receiver raise only
SFrameError subclasses on any input, and never return plaintext for a frame that was not protected."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import sframe
from media.sframe import MAX_VALUE, MalformedHeaderError, SFrameAuthError, SFrameError
from media.sframe_session import SFrameReceiver, SFrameSender
from tests.fuzz.seeds import mutate_bytes
from tests.fuzz.support import fuzz, one_line

SUITES = st.sampled_from([1, 2, 3, 4, 5])
KEY = bytes(range(16))


def non_minimal_header(kid: int, ctr: int, kid_len: int, ctr_len: int) -> bytes:
    """The same KID/CTR with extension bytes of the given lengths (0 = in the config byte)."""
    k = kid if kid_len == 0 else 0x8 | (kid_len - 1)
    c = ctr if ctr_len == 0 else 0x8 | (ctr_len - 1)
    return (
        bytes(((k << 4) | c,))
        + (kid.to_bytes(kid_len) if kid_len else b"")
        + (ctr.to_bytes(ctr_len) if ctr_len else b"")
    )


@fuzz(1000)
@given(st.binary(max_size=40))
def test_parse_header_random_bytes(data: bytes) -> None:
    try:
        kid, ctr, hlen = sframe.parse_header(data)
    except MalformedHeaderError as exc:
        one_line(str(exc))
        return
    assert 1 <= hlen <= min(len(data), 17)
    assert 0 <= kid <= MAX_VALUE and 0 <= ctr <= MAX_VALUE
    # What was parsed is what the bytes say: the minimal encoding round-trips to the same values.
    assert sframe.parse_header(sframe.encode_header(kid, ctr))[:2] == (kid, ctr)


@fuzz(500)
@given(SUITES, st.binary(max_size=200), st.binary(max_size=8))
def test_unprotect_random_bytes(suite: int, data: bytes, meta: bytes) -> None:
    with pytest.raises(SFrameError) as info:  # a random frame authenticating is a 2^-32 event at worst
        sframe.unprotect(suite, KEY, data, meta)
    one_line(str(info.value))


@fuzz(300)
@given(st.integers(-(2**16), 2**16), st.binary(min_size=1, max_size=60))
def test_unprotect_unknown_suite(suite: int, data: bytes) -> None:
    if suite in sframe.SUITES:
        return
    with pytest.raises(SFrameError):
        sframe.unprotect(suite, KEY, data)


@fuzz(600)
@given(
    SUITES,
    st.integers(0, MAX_VALUE) | st.integers(0, 9),
    st.integers(0, MAX_VALUE) | st.integers(0, 9),
    st.binary(max_size=120),
    st.randoms(use_true_random=False),
)
def test_unprotect_mutated_frame(suite: int, kid: int, ctr: int, pt: bytes, rnd: random.Random) -> None:
    frame = sframe.protect(suite, KEY, kid, ctr, pt, b"meta")
    assert sframe.unprotect(suite, KEY, frame, b"meta") == pt
    mutated = mutate_bytes(rnd, frame)
    if mutated == frame:
        return
    with pytest.raises((SFrameAuthError, MalformedHeaderError)) as info:
        sframe.unprotect(suite, KEY, mutated, b"meta")
    one_line(str(info.value))


@fuzz(400)
@given(
    SUITES,
    st.integers(0, 7),
    st.integers(0, 7),
    st.integers(0, 8),
    st.integers(0, 8),
    st.binary(max_size=40),
)
def test_header_field_edits_fail_authentication(
    suite: int, kid: int, ctr: int, kid_len: int, ctr_len: int, pt: bytes
) -> None:
    """Re-encoding the same KID/CTR non-minimally (or editing them) is caught: the AAD is the header as
    sent, so a rewritten header never authenticates even when it parses to the same values."""
    frame = sframe.protect(suite, KEY, kid, ctr, pt)
    hlen = sframe.parse_header(frame)[2]
    for new_kid, new_ctr in ((kid, ctr), (kid ^ 1, ctr), (kid, ctr ^ 1)):
        header = non_minimal_header(new_kid, new_ctr, kid_len, ctr_len)
        if header == frame[:hlen]:
            continue
        assert sframe.parse_header(header)[:2] == (new_kid, new_ctr)
        with pytest.raises(SFrameAuthError):
            sframe.unprotect(suite, KEY, header + frame[hlen:])


@fuzz(300)
@given(SUITES, st.binary(max_size=60), st.integers(0, 20))
def test_truncations_and_extensions(suite: int, pt: bytes, extra: int) -> None:
    frame = sframe.protect(suite, KEY, 3, 1000, pt)
    for cut in range(len(frame)):
        with pytest.raises((SFrameAuthError, MalformedHeaderError)):
            sframe.unprotect(suite, KEY, frame[:cut])
    with pytest.raises(SFrameAuthError):
        sframe.unprotect(suite, KEY, frame + bytes(extra + 1))


# -- the stateful receiver ---------------------------------------------------------------------------


@fuzz(100)
@given(SUITES, st.randoms(use_true_random=False), st.integers(1, 64))
def test_receiver_accepts_only_sent_frames_once(suite: int, rnd: random.Random, window: int) -> None:
    """A stream of genuine, replayed, reordered, mutated and random frames for two KIDs (one unknown to
    the receiver): every refusal is an SFrameError, every accepted plaintext was sent, and none twice."""
    receiver = SFrameReceiver(suite, window=window)
    receiver.add_key(1, KEY)
    senders = {1: SFrameSender(suite, KEY, 1), 2: SFrameSender(suite, KEY, 2)}
    sent: dict[bytes, bytes] = {}  # frame -> plaintext
    history: list[bytes] = []
    accepted: list[bytes] = []
    for step in range(60):
        op = rnd.randrange(5)
        if op <= 1 or not history:
            kid = 1 if op == 0 else rnd.choice([1, 2])
            pt = step.to_bytes(2) + rnd.randbytes(rnd.randrange(30))
            frame = senders[kid].protect(pt)
            sent[frame] = pt
            history.append(frame)
        elif op == 2:  # replay or deliver late
            frame = rnd.choice(history)
        elif op == 3:
            frame = mutate_bytes(rnd, rnd.choice(history))
        else:
            frame = rnd.randbytes(rnd.randrange(40))
        try:
            pt = receiver.unprotect(frame, now=float(step))
        except SFrameError as exc:
            one_line(str(exc))
            continue
        assert sent.get(frame) == pt, "accepted a frame that was never protected"
        accepted.append(pt)
    assert len(accepted) == len(set(accepted)), "a frame was accepted twice"


@fuzz(200)
@given(SUITES, st.binary(max_size=60), st.floats(0, 100), st.floats(0, 100))
def test_receiver_expired_key_is_refused(suite: int, data: bytes, now: float, grace: float) -> None:
    receiver = SFrameReceiver(suite)
    receiver.add_key(0, KEY)
    receiver.retire_key(0, now=0.0, grace=grace)
    frame = SFrameSender(suite, KEY, 0).protect(data)
    try:
        assert receiver.unprotect(frame, now=now) == data
        assert now < grace
    except SFrameError as exc:
        assert now >= grace
        assert str(exc) == "SFrame KID 0: key expired"

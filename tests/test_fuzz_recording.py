"""Fuzz the sealed-recording reader on mutations of real sealed recordings.

Every mutation is either detected (RecordingError, one line) or, for a cut tail, reported as incomplete;
`read_recording` never returns a frame that was not sealed, in the order it was sealed.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.recording import (
    MAGIC,
    RecordingContents,
    RecordingError,
    RecordingFormatError,
    read_recording,
)
from tests.fuzz.seeds import mutate_bytes, recording_key, sealed_recording
from tests.fuzz.support import fuzz, one_line

SUITES = st.sampled_from([1, 2, 3, 4, 5])
SEEDS = {(suite, end): sealed_recording(suite, end=end) for suite in range(1, 6) for end in (True, False)}


def read_checked(data: bytes, sealed: list[tuple[int, bytes]]) -> RecordingContents | None:
    """Read; on success check that only sealed frames came back, as a prefix in order."""
    try:
        out = read_recording(data, recording_key)
    except RecordingError as exc:
        one_line(str(exc))
        return None
    assert out.frames == sealed[: len(out.frames)], "returned a frame that was not sealed (or out of order)"
    assert (out.truncated_after is None) == out.complete
    if not out.complete:
        assert out.truncated_after == len(out.frames)
    return out


@fuzz(600)
@given(SUITES, st.booleans(), st.randoms(use_true_random=False))
def test_mutated_recording_is_detected_or_incomplete(suite: int, end: bool, rnd: random.Random) -> None:
    original, _, sealed = SEEDS[(suite, end)]
    data = mutate_bytes(rnd, original, steps=3)
    out = read_checked(data, sealed)
    if out is None or data == original:
        return
    # Not detected: then it reads as a crash-cut file (a shorter prefix, or a record whose length now
    # runs past the end of the file), never as a complete one.
    assert not out.complete, "a mutated recording read back as complete"
    assert out.trailing_bytes > 0 or original.startswith(data)


@fuzz(200)
@given(SUITES, st.booleans(), st.data())
def test_tail_truncation_is_reported_incomplete(suite: int, end: bool, data: st.DataObject) -> None:
    original, offsets, sealed = SEEDS[(suite, end)]
    cut = data.draw(st.integers(0, len(original) - 1))
    if cut < offsets[0]:  # inside the header
        with pytest.raises(RecordingFormatError):
            read_recording(original[:cut], recording_key)
        return
    out = read_checked(original[:cut], sealed)
    assert out is not None and not out.complete
    whole = sum(1 for o in offsets[1:] if o <= cut)  # records wholly inside the cut
    assert len(out.frames) == min(whole, len(sealed))
    assert out.trailing_bytes == cut - max(o for o in offsets if o <= cut)


@fuzz(300)
@given(SUITES, st.data())
def test_record_level_edits_are_detected(suite: int, data: st.DataObject) -> None:
    """Remove, duplicate or swap whole records, or append bytes after END: always an integrity error."""
    original, offsets, _ = SEEDS[(suite, True)]
    head = original[: offsets[0]]
    records = [original[a:b] for a, b in itertools.pairwise(offsets)]
    op = data.draw(st.sampled_from(["remove", "duplicate", "swap", "after-end", "end-early"]))
    i = data.draw(st.integers(0, len(records) - 2))  # a DATA record
    if op == "remove":
        records.pop(i)
    elif op == "duplicate":
        records.insert(i, records[i])
    elif op == "swap":
        j = data.draw(st.integers(0, len(records) - 2).filter(lambda j: j != i))
        records[i], records[j] = records[j], records[i]
    elif op == "after-end":
        records.append(data.draw(st.binary(min_size=1, max_size=40)))
    else:  # the END record moved before the last DATA records
        records.insert(i, records.pop())
    with pytest.raises(RecordingError) as info:
        read_recording(head + b"".join(records), recording_key)
    one_line(str(info.value))


@fuzz(500)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    with pytest.raises(RecordingFormatError):
        read_recording(data, recording_key)


@fuzz(500)
@given(SUITES, st.binary(max_size=300))
def test_valid_header_then_random_records(suite: int, tail: bytes) -> None:
    original, offsets, sealed = SEEDS[(suite, True)]
    out = read_checked(original[: offsets[0]] + tail, sealed)
    assert out is None or (out.frames == [] and not out.complete)


@fuzz(300)
@given(st.binary(min_size=4, max_size=80))
def test_magic_then_random_header(body: bytes) -> None:
    with pytest.raises(RecordingError) as info:
        read_recording(MAGIC + body, recording_key)
    one_line(str(info.value))


def test_wrong_key_is_detected() -> None:
    original, _, _ = SEEDS[(4, True)]
    with pytest.raises(RecordingError, match="record 0: authentication failed"):
        read_recording(original, lambda h: bytes(16))

"""Sealed recording format: round trip, and every kind of tampering on a real sealed recording."""

from __future__ import annotations

import dataclasses
import os

import pytest

from media import recording
from media.recording import RecordingHeader, RecordingIntegrityError, RecordingWriter, read_recording

KEY = bytes(range(16))
HEADER = RecordingHeader(suite=4, kid=3, kek_id="local", kek_version=2, call_id="call-abc", track=0)
FRAMES = [(960 * i, os.urandom(80 + i % 7)) for i in range(20)]


def seal(
    header: RecordingHeader = HEADER, key: bytes = KEY, *, end: bool = True
) -> tuple[bytes, list[bytes]]:
    w = RecordingWriter(header, key)
    records = [w.seal(ts, payload) for ts, payload in FRAMES]
    if end:
        records.append(w.end())
    assert w.records == len(records)
    return w.header_bytes(), records


def read(data: bytes, key: bytes = KEY) -> recording.RecordingContents:
    return read_recording(data, lambda h: key)


def integrity_error(data: bytes) -> str:
    with pytest.raises(RecordingIntegrityError) as info:
        read(data)
    return str(info.value)


@pytest.mark.parametrize("suite", [1, 2, 3, 4, 5])
def test_round_trip(suite: int) -> None:
    header = dataclasses.replace(HEADER, suite=suite)
    key = KEY * 2 if suite == 5 else KEY
    head, records = seal(header, key)
    seen: list[RecordingHeader] = []
    out = read_recording(head + b"".join(records), lambda h: seen.append(h) or key)
    assert seen == [header] and out.header == header
    assert out.frames == FRAMES
    assert out.complete and out.truncated_after is None and out.trailing_bytes == 0
    assert recording.decode_header(head) == (header, len(head))


def test_header_fields_round_trip() -> None:
    h = RecordingHeader(5, 2**64 - 1, "kms/key-é", 2**32 - 1, "c" * 255, 65535, "opus", 48000, 2, 1920)
    assert recording.decode_header(recording.encode_header(h))[0] == h
    with pytest.raises(ValueError, match="at most 255 bytes"):
        recording.encode_header(dataclasses.replace(h, call_id="c" * 256))


def test_no_clear_payload_in_file() -> None:
    head, records = seal()
    data = head + b"".join(records)
    assert not any(payload in data for _, payload in FRAMES)


def test_flip_a_bit() -> None:
    head, records = seal()
    rec = bytearray(records[17])
    rec[-5] ^= 0x10
    records[17] = bytes(rec)
    assert integrity_error(head + b"".join(records)) == "record 17: authentication failed"


@pytest.mark.parametrize("offset", [0, 5, 6, 20])  # type byte, SFrame header, ciphertext
def test_flip_a_bit_anywhere_in_a_record(offset: int) -> None:
    head, records = seal()
    rec = bytearray(records[4])
    rec[offset] ^= 0x01
    records[4] = bytes(rec)
    assert integrity_error(head + b"".join(records)).startswith("record 4: ")


def test_reorder_two_records() -> None:
    head, records = seal()
    records[5], records[6] = records[6], records[5]
    assert (
        integrity_error(head + b"".join(records))
        == "record 5: expected counter 5, found 6 (record removed or reordered)"
    )


def test_duplicate_record() -> None:
    head, records = seal()
    records.insert(9, records[8])
    assert integrity_error(head + b"".join(records)) == "record 9: duplicate of record 8"


def test_remove_middle_record() -> None:
    head, records = seal()
    del records[5]
    assert (
        integrity_error(head + b"".join(records))
        == "record 5: expected counter 5, found 6 (record removed or reordered)"
    )


def test_truncate_mid_record_keeps_valid_prefix() -> None:
    head, records = seal(end=False)
    data = head + b"".join(records[:12]) + records[12][:-7]
    out = read(data)
    assert out.frames == FRAMES[:12]
    assert not out.complete and out.truncated_after == 12 and out.trailing_bytes == len(records[12]) - 7
    # Even a cut inside the 5-byte record prefix.
    out = read(head + b"".join(records[:3]) + records[3][:2])
    assert (out.frames, out.truncated_after, out.trailing_bytes) == (FRAMES[:3], 3, 2)


def test_truncate_whole_records_or_end_looks_like_a_crash() -> None:
    head, records = seal()
    for keep in (0, 7, len(FRAMES)):  # the last case drops only the END record
        out = read(head + b"".join(records[:keep]))
        assert out.frames == FRAMES[:keep] and not out.complete and out.truncated_after == keep


def test_garbage_after_end() -> None:
    head, records = seal()
    assert (
        integrity_error(head + b"".join(records) + b"\x00junk") == "record 20: 5 bytes after the END record"
    )
    # A second END (a replayed END record) is also data after END.
    assert integrity_error(head + b"".join(records) + records[-1]).startswith("record 20: ")


def test_record_moved_to_another_call_or_track() -> None:
    _, victim = seal()
    for other in (dataclasses.replace(HEADER, call_id="call-xyz"), dataclasses.replace(HEADER, track=1)):
        head, records = seal(other)  # same key on purpose: only the AAD binding stops it
        records[3] = victim[3]
        assert integrity_error(head + b"".join(records)) == "record 3: authentication failed"


def test_swap_or_edit_header() -> None:
    _, records = seal()
    for other in (
        dataclasses.replace(HEADER, call_id="call-xyz"),
        dataclasses.replace(HEADER, kek_version=3),
        dataclasses.replace(HEADER, sample_rate=24000),
    ):
        head = recording.encode_header(other)
        assert integrity_error(head + b"".join(records)) == "record 0: authentication failed"


def test_data_and_end_types_cannot_be_exchanged() -> None:
    head, records = seal()
    end = bytearray(records[-1])
    end[0] = recording.DATA
    assert integrity_error(head + b"".join([*records[:-1], bytes(end)])) == "record 20: authentication failed"


def test_wrong_key_and_kid() -> None:
    head, records = seal()
    with pytest.raises(RecordingIntegrityError, match=r"^record 0: authentication failed$"):
        read(head + b"".join(records), key=b"x" * 16)
    _, other = seal(dataclasses.replace(HEADER, kid=4))
    assert integrity_error(head + other[0]) == "record 0: KID 4 does not match the header's KID 3"


def test_oversized_and_unknown_records() -> None:
    head, records = seal()
    assert integrity_error(head + b"\x07" + records[0][1:]) == "record 0: unknown record type 7"
    big = b"\x00" + (1 << 20).to_bytes(4, "big") + b"x" * 10
    assert integrity_error(head + records[0] + big) == "record 1: length 1048576 exceeds 65536"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF....WAVEfmt ", "not a sealed recording (bad magic)"),
        (recording.MAGIC + b"\x00\x02\x00\x00", "unsupported sealed recording version 2"),
        (recording.MAGIC + b"\x00\x01", "sealed recording header truncated"),
        (recording.encode_header(HEADER)[:-3], "sealed recording header truncated"),
    ],
)
def test_bad_file(data: bytes, message: str) -> None:
    with pytest.raises(recording.RecordingFormatError) as info:
        read(data)
    assert str(info.value) == message
    assert issubclass(recording.RecordingFormatError, recording.SFrameError)


def test_writer_refuses_after_end() -> None:
    w = RecordingWriter(HEADER, KEY)
    w.end()
    with pytest.raises(recording.RecordingError, match=r"^recording already ended$"):
        w.seal(0, b"x")

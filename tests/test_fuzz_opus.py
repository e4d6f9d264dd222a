"""Fuzz the Opus decoder on garbage payloads: only OpusError escapes, the output is bounded s16 PCM, and the
decoder keeps decoding good packets afterwards (one bad RTP payload must not end the call)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.opus import OpusDecoder, OpusError
from media.opus_tap import opus_packet_samples
from tests.fuzz.seeds import mutate_bytes, opus_packets
from tests.fuzz.support import fuzz, one_line

PACKETS = opus_packets(10)
MAX_PCM = (
    120 * 48 * 2 * 2
)  # RFC 6716 section 3.2.5: at most 120 ms per packet (48 kHz, s16), doubled for slack
DECODER = OpusDecoder()  # one decoder across examples, as one track's decoder sees a whole call


def decode_checked(decoder: OpusDecoder, payload: bytes) -> None:
    try:
        pcm = decoder.decode(payload)
    except OpusError as exc:
        one_line(str(exc))
        assert str(exc) == f"undecodable Opus packet of {len(payload)} bytes"
        return
    assert len(pcm) % 2 == 0 and len(pcm) <= MAX_PCM


def still_decodes(decoder: OpusDecoder) -> None:
    assert len(decoder.decode(PACKETS[0])) == 960 * 2


@fuzz(1500)
@given(st.binary(max_size=1500))
def test_random_payload(payload: bytes) -> None:
    decode_checked(DECODER, payload)


@fuzz(1500)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))
def test_every_toc_and_frame_count_byte(toc: int, count: int, rest: bytes) -> None:
    """RFC 6716 section 3.1 TOC byte (config, stereo, code) and, for code 3, the frame-count byte with its
    VBR and padding flags: the length and padding fields are where parsers overrun."""
    decode_checked(DECODER, bytes((toc, count)) + rest)


@fuzz(1500)
@given(st.randoms(use_true_random=False))
def test_mutated_packet(rnd: random.Random) -> None:
    decode_checked(DECODER, mutate_bytes(rnd, rnd.choice(PACKETS)))


@fuzz(30)
@given(st.integers(1500, 70_000), st.integers(0, 255))
def test_oversized_payload(size: int, fill: int) -> None:
    decode_checked(DECODER, bytes((0xFC,)) + bytes([fill]) * size)


@fuzz(100)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20))
def test_decoder_survives_a_burst_of_garbage(garbage: list[bytes]) -> None:
    decoder = OpusDecoder()
    still_decodes(decoder)
    for payload in garbage:
        decode_checked(decoder, payload)
    # The decoder is still usable for the rest of the call: every good packet gives its 20 ms.
    sizes = [len(decoder.decode(packet)) // 2 for packet in PACKETS]
    assert sizes == [960] * len(PACKETS), sizes


def test_regression_silk_then_celt_packet_length() -> None:
    """Found by the fuzzer with FFmpeg's native decoder: a 1-byte SILK packet (TOC 0x00) before a CELT packet
    made that packet decode to 984 samples, not 960 (resampler delay). libopus, the reference decoder, keeps
    every packet at its own duration (the 1-byte packet is a 10 ms frame, `opus_packet_samples`)."""
    decoder = OpusDecoder()
    decoder.decode(PACKETS[0])
    assert len(decoder.decode(b"\x00")) // 2 == opus_packet_samples(b"\x00") == 480
    assert [len(decoder.decode(p)) // 2 for p in PACKETS[1:4]] == [960, 960, 960]


def test_empty_payload_is_no_audio() -> None:
    assert DECODER.decode(b"") == b""


@pytest.mark.parametrize(
    "payload",
    [b"\x03", b"\x03\x00", b"\x03\xff", b"\x03\x7f" + b"\xff" * 10, b"\x02\xff\xff", b"\x01" + b"\x00" * 3],
    ids=[
        "code3-no-count",
        "code3-zero-frames",
        "code3-vbr-pad-63",
        "code3-padding-overrun",
        "code2-len",
        "c1",
    ],
)
def test_malformed_framing(payload: bytes) -> None:
    decode_checked(OpusDecoder(), payload)


# -- the direct libopus call and the PyAV path: the same library, so the same bytes -----------------------


def test_direct_libopus_is_in_use() -> None:
    """PyAV bundles libopus; the decoder calls it directly (CI would otherwise measure the fallback)."""
    assert OpusDecoder().direct and not OpusDecoder(direct=False).direct


def test_direct_and_pyav_decode_the_fixture_identically() -> None:
    import av

    with av.open("fixtures/bench/00.opus") as container:
        payloads = [bytes(p) for p in container.demux(audio=0) if p.size][:500]
    direct, pyav = OpusDecoder(), OpusDecoder(direct=False)
    assert [direct.decode(p) for p in payloads] == [pyav.decode(p) for p in payloads]
    # Any bytes-like payload (a slice of a recording file, a memoryview of a datagram) decodes alike.
    again = OpusDecoder()
    assert again.decode(memoryview(payloads[0])) == OpusDecoder().decode(bytearray(payloads[0]))


def _outcome(decoder: OpusDecoder, payload: bytes) -> bytes | str:
    try:
        return decoder.decode(payload)
    except OpusError as exc:
        return str(exc)


DIRECT, PYAV = OpusDecoder(), OpusDecoder(direct=False)  # state carries across examples in both alike


@fuzz(800)
@given(st.randoms(use_true_random=False))
def test_direct_and_pyav_agree_on_mutated_packets(rnd: random.Random) -> None:
    payload = mutate_bytes(rnd, rnd.choice(PACKETS))
    assert _outcome(DIRECT, payload) == _outcome(PYAV, payload)
    assert _outcome(DIRECT, PACKETS[0]) == _outcome(PYAV, PACKETS[0])

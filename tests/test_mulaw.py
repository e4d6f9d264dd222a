"""G.711 mu-law codec (ITU-T G.191 reference algorithm) and the 8 <-> 48 kHz resamplers."""

from __future__ import annotations

import hashlib

import numpy as np

from media import mulaw
from media.resample import Resampler48to16

# sha256 of the full tables, computed once from the G.191 reference algorithm (decode as big-endian int16;
# decode also equals audioop.ulaw2lin, which Python 3.13 removed, so it cannot be checked at test time).
DECODE_SHA256 = "080f35de1bab772bcd7b3e293041aa9014b51e7b6d4e98844885ba106ec0dee9"
ENCODE_SHA256 = "455d3ccb989aea3ed20d8783a99859635739069ad7ffab3bfc61f36feb6de709"


def test_decode_reference_values() -> None:
    out = mulaw.decode(bytes([0x00, 0x80, 0xFF, 0x7F, 0x0F, 0x8F, 0xF0, 0x70, 0xFE, 0x7E]))
    # G.711 mu-law: ends +-32124, top segment from +-16764, zero twice (0xFF +0, 0x7F -0), first step +-8
    assert out.tolist() == [-32124, 32124, 0, 0, -16764, 16764, 120, -120, 8, -8]
    assert hashlib.sha256(mulaw.DECODE.astype(">i2").tobytes()).hexdigest() == DECODE_SHA256


def test_encode_reference_values() -> None:
    pcm = np.array([0, 1, -1, -4, -5, 8, -8, 32767, -32768, 32124, -32124, 7932, -7932], dtype=np.int16)
    assert list(mulaw.encode(pcm)) == [
        0xFF, 0xFF, 0x7F, 0x7F, 0x7E, 0xFE, 0x7E, 0x80, 0x00, 0x80, 0x00, 0xA0, 0x20,
    ]  # fmt: skip
    assert hashlib.sha256(mulaw.ENCODE.tobytes()).hexdigest() == ENCODE_SHA256


def test_round_trip_every_code_and_monotonic() -> None:
    codes = bytes(range(256))
    again = mulaw.encode(mulaw.decode(codes))
    # every code survives decode -> encode except negative zero, which comes back as positive zero
    assert [c for c, d in zip(codes, again, strict=True) if c != d] == [0x7F]
    assert again[0x7F] == 0xFF
    # encoding is monotonic in the input and its error is within half a step (clipped beyond 32124)
    x = np.arange(-32768, 32768, dtype=np.int16)
    y = mulaw.decode(mulaw.encode(x)).astype(np.int32)
    assert np.all(np.diff(y) >= 0)
    inside = np.abs(x.astype(np.int32)) <= 32124
    step = np.maximum(8, 2 ** (np.floor(np.log2(np.abs(x.astype(np.int32)) + 132)) - 4))
    assert np.all(np.abs(y - x)[inside] <= step[inside])


def _sine(freq: float, rate: int, seconds: float, amp: float = 10_000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_upsampler_is_chunk_independent_and_accurate() -> None:
    x = _sine(1000.0, 8000, 1.0)
    whole = mulaw.Upsampler8to48().process(x)
    up = mulaw.Upsampler8to48()
    pieces = b"".join(up.process(x[i : i + n]) for i, n in zip(range(0, 8000, 160), [160] * 50, strict=True))
    assert pieces == whole and len(whole) == 2 * 48_000
    y = np.frombuffer(whole, dtype="<i2").astype(np.float64)
    delay = (32 * 6 - 1) / 2
    t = (np.arange(48_000) - delay) / 48_000
    ideal = 10_000 * np.sin(2 * np.pi * 1000 * t)
    assert np.max(np.abs(y - ideal)[400:-400]) < 50  # < 0.5 % of the amplitude once the filter is primed


def test_upsampler_removes_images() -> None:
    # 3 kHz at 8 kHz images to 5 kHz at 48 kHz; the interpolation filter must take it down by >= 50 dB
    y = np.frombuffer(mulaw.Upsampler8to48().process(_sine(3000.0, 8000, 1.0)), dtype="<i2")
    spec = np.abs(np.fft.rfft(y[4800:] * np.hanning(len(y) - 4800)))
    freqs = np.fft.rfftfreq(len(y) - 4800, 1 / 48_000)
    tone = spec[np.argmin(np.abs(freqs - 3000))]
    image = spec[np.argmin(np.abs(freqs - 5000))]
    assert 20 * np.log10(image / tone) < -50


def test_speech_path_rate_chain() -> None:
    """mu-law 20 ms -> 960 samples at 48 kHz -> 320 at 16 kHz: the same timeline as an Opus frame."""
    dec, res = mulaw.MulawDecoder(), Resampler48to16()
    chunk = mulaw.encode(_sine(440.0, 8000, 0.02))
    pcm48 = dec.decode(chunk)
    assert len(pcm48) == 2 * 960
    res.process(pcm48)
    assert len(res.process(dec.decode(chunk))) == 2 * 320


def test_downsampler_round_trip() -> None:
    x48 = np.frombuffer(mulaw.Upsampler8to48().process(_sine(700.0, 8000, 1.0)), dtype="<i2")
    down = mulaw.Downsampler48to8()
    y = np.concatenate([down.process(x48[i : i + 960]) for i in range(0, len(x48), 960)])
    assert len(y) == 8000  # history starts as silence: one output per 6 inputs
    assert abs(float(np.std(y[200:])) - 10_000 / np.sqrt(2)) < 100

"""G.711 mu-law (ITU-T G.711, the telephone codec of Media Streams) and 8 kHz <-> 48 kHz resampling.

Sans-IO and table-based: decoding is one 256-entry lookup, encoding one 65536-entry lookup (64 KiB, built
once with the reference algorithm), so a 20 ms chunk (160 bytes) costs a few microseconds. (`audioop` is
gone in Python 3.13.) Decoded values are the G.711 reference ones: 0xFF and 0x7F are 0, 0x80 is +32124,
0x00 is -32124 (16-bit scale, i.e. the 14-bit G.711 values times 4).

The speech path runs at 48 kHz timestamps like Opus (`media.frames`), so a mu-law track is decoded to
8 kHz, interpolated by 6 to 48 kHz here, and then takes the same 48 -> 16 kHz decimator as every other
track (`media.resample`): one speech timeline, one VAD clock, whatever the codec. The interpolator and the
48 -> 8 kHz decimator (the `call --media-streams` client) are streaming polyphase FIRs: feeding a signal in
pieces of any size gives exactly the samples of feeding it at once.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from media.frames import SAMPLE_RATE
from media.resample import _design

CODEC: Final = "pcmu"  # the recording's codec name (RFC 3551 section 4.5.14 calls G.711 mu-law PCMU)
RATE: Final = 8_000
FACTOR: Final = SAMPLE_RATE // RATE  # 6
CHUNK_SAMPLES: Final = 160  # 20 ms at 8 kHz: one Media Streams message
_BIAS: Final = 0x84
_CLIP: Final = 32635


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    out: np.ndarray = np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)
    return out


def _encode_table() -> np.ndarray:
    """Every int16 (indexed by its uint16 bit pattern) to its mu-law byte: ITU-T G.191 `ulaw_compress`.

    The magnitude is taken in 14 bits as G.191 does, `(~x) >> 2` for negatives (so -1..-4 encode as -0,
    0x7F); `audioop.lin2ulaw` rounds negatives the other way and differs on 1 in 4 negative inputs.
    """
    x = np.arange(65536, dtype=np.int32)
    x = np.where(x >= 32768, x - 65536, x)
    absno = np.minimum(np.where(x < 0, (~x) >> 2, x >> 2) + 33, 0x1FFF)
    segno = 1 + np.frexp((absno >> 6).astype(np.float64))[1]  # 1 + bit length of absno >> 6
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    out: np.ndarray = ((high << 4) | low | np.where(x >= 0, 0x80, 0)).astype(np.uint8)
    return out


DECODE: Final = _decode_table()
ENCODE: Final = _encode_table()


def decode(payload: bytes) -> np.ndarray:
    """mu-law bytes -> int16 samples (every byte value is valid: decoding never fails)."""
    out: np.ndarray = DECODE[np.frombuffer(payload, dtype=np.uint8)]
    return out


def encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes."""
    return bytes(ENCODE[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes())


# Low-pass at 48 kHz for both directions: -6 dB at 3.9 kHz, ~70 dB down past ~4.5 kHz (192 taps, 32 per
# phase), so the images of 8 kHz audio (interpolation) and what would alias (decimation) are removed.
_TAPS: Final = 32 * FACTOR
_LOWPASS: Final = _design(_TAPS, 3_900.0, 7.0)
# Interpolation: phase p of output n*6+p is the dot product of the last 32 inputs with h[p::6] (gain 6).
_PHASES: Final = np.ascontiguousarray((_LOWPASS * FACTOR).reshape(-1, FACTOR).T[:, ::-1])
_PER_PHASE: Final = _TAPS // FACTOR
_DECIMATE: Final = _LOWPASS[::-1].copy()


def _clip16(y: np.ndarray) -> bytes:
    out: bytes = np.rint(y, out=y).clip(-32768, 32767, out=y).astype("<i2").tobytes()
    return out


class Upsampler8to48:
    """Stateful interpolator: `process(pcm8)` (int16 at 8 kHz) returns s16le at 48 kHz, 6 samples per input.

    Group delay: (192 - 1) / 2 output samples (~2 ms). Output length is always 6x the input, so a decoded
    chunk fills exactly its place on the 48 kHz timeline.
    """

    __slots__ = ("_hist",)

    def __init__(self) -> None:
        self._hist = np.zeros(_PER_PHASE - 1, dtype=np.float32)

    def process(self, pcm8: np.ndarray) -> bytes:
        if len(pcm8) == 0:
            return b""
        buf = np.concatenate((self._hist, pcm8.astype(np.float32)))
        n = len(pcm8)
        windows = np.ndarray((n, _PER_PHASE), dtype=np.float32, buffer=buf, strides=(4, 4))
        y = np.einsum("ik,pk->ip", windows, _PHASES).reshape(-1)
        self._hist = buf[n:]
        return _clip16(y)


class Downsampler48to8:
    """Stateful decimator: `process(pcm48)` (int16 at 48 kHz, any length) returns int16 at 8 kHz."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = np.zeros(_TAPS - 1, dtype=np.float32)

    def process(self, pcm48: np.ndarray) -> np.ndarray:
        buf = np.concatenate((self._buf, pcm48.astype(np.float32)))
        n = (len(buf) - _TAPS) // FACTOR + 1 if len(buf) >= _TAPS else 0
        if n == 0:
            self._buf = buf
            return np.zeros(0, dtype=np.int16)
        windows = np.ndarray((n, _TAPS), dtype=np.float32, buffer=buf, strides=(FACTOR * 4, 4))
        y = np.einsum("ij,j->i", windows, _DECIMATE)
        self._buf = buf[n * FACTOR :]
        out: np.ndarray = np.rint(y, out=y).clip(-32768, 32767, out=y).astype(np.int16)
        return out


class MulawDecoder:
    """mu-law payload -> 48 kHz s16le for the speech path (the `OpusDecoder.decode` shape). Stateful."""

    __slots__ = ("_up",)

    def __init__(self) -> None:
        self._up = Upsampler8to48()

    def decode(self, payload: bytes) -> bytes:
        return self._up.process(decode(payload))

"""Opus encode/decode (PyAV's libopus; any Opus frame duration) and Ogg Opus / WAV writing for export."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE

_TIME_BASE = Fraction(1, SAMPLE_RATE)


class OpusError(Exception):
    """An Opus payload could not be encoded or decoded (message carries sizes only)."""


# Opus frame durations (RFC 6716 section 2.1.4, as libopus encodes them) in 48 kHz samples.
FRAME_DURATIONS = {120: "2.5", 240: "5", 480: "10", 960: "20", 1920: "40", 2880: "60", 3840: "80"}
FRAME_DURATIONS |= {4800: "100", 5760: "120"}


class OpusEncoder:
    """Encodes 48 kHz mono s16 frames of `frame_samples` (20 ms by default, what a WebRTC sender emits;
    2.5 to 120 ms as SIP gateways and `ptime` clients send) to one Opus packet each."""

    __slots__ = ("_ctx", "_pts", "frame_samples")

    def __init__(self, bitrate: int = 32_000, *, frame_samples: int = FRAME_SAMPLES) -> None:
        if frame_samples not in FRAME_DURATIONS:
            raise OpusError(f"no Opus frame duration of {frame_samples} samples")
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = _TIME_BASE
        ctx.options = {"frame_duration": FRAME_DURATIONS[frame_samples], "application": "voip"}
        ctx.open()
        self._ctx = ctx
        self._pts = 0
        self.frame_samples = frame_samples

    def encode(self, pcm: bytes) -> bytes:
        n = self.frame_samples
        if len(pcm) != n * 2:
            raise OpusError(f"expected {n * 2} bytes of PCM, got {len(pcm)}")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += n
        packets = self._ctx.encode(frame)
        # libopus has a fixed look-ahead but emits exactly one packet per frame after the first.
        return b"".join(bytes(p) for p in packets)


_MAX_SAMPLES = 5760  # 120 ms at 48 kHz: the longest Opus packet (RFC 6716 section 3.2.5)


def _load_libopus() -> ctypes.CDLL | None:
    """libopus as PyAV's wheel bundles it (the very library its `libopus` decoder runs), or None."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    for path in sorted(libs.glob("libopus-*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        return lib
    return None


_LIBOPUS = _load_libopus()


class OpusDecoder:
    """Decodes Opus packets (mono or stereo, as WebRTC sends) to 48 kHz mono s16 PCM.

    libopus, the reference decoder (what browsers run), opened mono: it downmixes stereo packets itself and
    hands out s16. Called directly (ctypes, the library PyAV bundles) it costs about half of the same decode
    through PyAV's packet and frame objects, and it runs without the GIL; the PyAV path is the fallback and
    gives the same bytes (tests/test_fuzz_opus.py). FFmpeg's native `opus` decoder, used before, outputs
    float and needed a numpy downmix and clip per frame (benchmarks/vad_bench.py has all three).
    """

    __slots__ = ("_buf", "_ctx", "_state")

    def __init__(self, *, direct: bool = True) -> None:
        self._state: int | None = None
        self._buf = ctypes.create_string_buffer(_MAX_SAMPLES * 2)
        self._ctx: Any = None  # av's AudioCodecContext (the fallback)
        if direct and _LIBOPUS is not None:
            err = ctypes.c_int(0)
            state = _LIBOPUS.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(err))
            if state and err.value == 0:
                self._state = state
                return
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate = SAMPLE_RATE
        self._ctx.layout = "mono"

    @property
    def direct(self) -> bool:
        return self._state is not None

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state is not None and _LIBOPUS is not None:
            _LIBOPUS.opus_decoder_destroy(state)

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            return b""  # (an empty packet would ask libopus for loss concealment)
        if self._state is not None:
            assert _LIBOPUS is not None
            data = payload if type(payload) is bytes else bytes(payload)  # c_char_p takes bytes only
            n = _LIBOPUS.opus_decode(self._state, data, len(data), self._buf, _MAX_SAMPLES, 0)
            if n < 0:
                raise OpusError(f"undecodable Opus packet of {len(payload)} bytes")
            return ctypes.string_at(self._buf, 2 * n)
        assert self._ctx is not None
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except (av.error.FFmpegError, ValueError) as exc:  # garbage payloads must not end the call
            raise OpusError(f"undecodable Opus packet of {len(payload)} bytes") from exc
        if len(frames) == 1 and frames[0].format.name == "s16" and len(frames[0].layout.channels) == 1:
            pcm: bytes = frames[0].to_ndarray().tobytes()  # the only shape libopus opened mono gives
            return pcm
        return b"".join(_mono_s16(frame) for frame in frames)


def _mono_s16(frame: av.AudioFrame) -> bytes:
    """Any decoded frame as mono s16 (a decoder that ignores the requested layout or sample format)."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    # Planar arrays are (channels, samples); packed ones are (1, samples * channels).
    arr = arr.reshape(channels, -1) if frame.format.is_planar else arr.reshape(-1, channels).T
    mono = arr[0] if channels == 1 else arr.mean(axis=0, dtype=np.float32)
    if frame.format.name.startswith(("flt", "dbl")):
        mono = np.clip(mono * np.float32(32767.0), -32768.0, 32767.0)
    return bytes(mono.astype(np.int16).tobytes())


def write_ogg_opus(target: Path | BinaryIO, packets: Iterable[tuple[int, bytes]]) -> None:
    """Mux Opus packets (timestamp in 48 kHz samples, payload) into an Ogg Opus file (a path, or a
    writable binary file such as a BytesIO) without re-encoding."""
    with av.open(str(target) if isinstance(target, Path) else target, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE)
        stream.codec_context.layout = "mono"
        stream.codec_context.format = "s16"
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        stream.codec_context.open()  # fills extradata (OpusHead) the Ogg muxer needs
        for ts, payload in packets:
            pkt = av.Packet(payload)
            pkt.pts = pkt.dts = ts
            pkt.time_base = _TIME_BASE
            pkt.stream = stream
            out.mux(pkt)


def write_wav(path: Path, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)

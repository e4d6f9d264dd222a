"""Opus encode/decode of 20 ms frames (PyAV's libopus) and Ogg Opus / WAV writing for export."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE

_TIME_BASE = Fraction(1, SAMPLE_RATE)


class OpusError(Exception):
    """An Opus payload could not be encoded or decoded (message carries sizes only)."""


class OpusEncoder:
    """Encodes 960-sample 48 kHz mono s16 frames to one Opus packet each (what a WebRTC sender emits)."""

    __slots__ = ("_ctx", "_pts")

    def __init__(self, bitrate: int = 32_000) -> None:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = _TIME_BASE
        ctx.options = {"frame_duration": "20", "application": "voip"}
        ctx.open()
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        if len(pcm) != FRAME_SAMPLES * 2:
            raise OpusError(f"expected {FRAME_SAMPLES * 2} bytes of PCM, got {len(pcm)}")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._pts += FRAME_SAMPLES
        packets = self._ctx.encode(frame)
        # libopus has a fixed look-ahead but emits exactly one packet per 20 ms frame after the first.
        return b"".join(bytes(p) for p in packets)


class OpusDecoder:
    """Decodes Opus packets (mono or stereo, as WebRTC sends) to 48 kHz mono s16 PCM.

    libopus, the reference decoder (what browsers run), opened mono: it downmixes stereo packets itself and
    hands out s16, so a frame is one copy. FFmpeg's native `opus` decoder, used before, outputs float and
    needed a numpy downmix and clip per frame: 1.5x the CPU (measured by benchmarks/vad_bench.py).
    """

    __slots__ = ("_ctx",)

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate = SAMPLE_RATE
        self._ctx.layout = "mono"

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            return b""
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except (av.error.FFmpegError, ValueError) as exc:  # garbage payloads must not end the call
            raise OpusError(f"undecodable Opus packet of {len(payload)} bytes") from exc
        if len(frames) == 1 and frames[0].format.name == "s16" and len(frames[0].layout.channels) == 1:
            return frames[0].to_ndarray().tobytes()  # the only shape libopus opened mono gives
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


def write_ogg_opus(path: Path, packets: list[tuple[int, bytes]]) -> None:
    """Mux Opus packets (timestamp in 48 kHz samples, payload) into an Ogg Opus file without re-encoding."""
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE)
        stream.codec_context.layout = "mono"
        stream.codec_context.format = "s16"
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        stream.codec_context.open()  # fills extradata (OpusHead) the Ogg muxer needs
        for ts, payload in packets:
            pkt = av.Packet(payload)
            pkt.pts = ts
            pkt.dts = ts
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

"""Call fixtures: an audio file (WAV/FLAC/Ogg Opus, one track) or a directory of them (one track each, same
timeline), optionally with `fixture.json` ({"variables": {...}, "expected": {...}}).

Decoded with PyAV into 48 kHz mono s16 PCM, then cut into 20 ms frames. Errors are one line naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".opus", ".oga"})
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_FIXTURE_SECONDS = 4 * 3600  # a bound on what one track may decode to (about 1.4 GB of PCM)


class FixtureError(Exception):
    """A fixture cannot be read. The message names the file and what is wrong, in one line."""


@dataclass(frozen=True, slots=True)
class TrackSource:
    name: str
    pcm: np.ndarray  # int16, 48 kHz mono

    @property
    def duration(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Fixture:
    name: str
    tracks: tuple[TrackSource, ...]
    variables: Mapping[str, str] = field(default_factory=dict)
    expected: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return max((t.duration for t in self.tracks), default=0.0)


def decode_audio(path: Path) -> np.ndarray:
    """Decode one audio file to 48 kHz mono int16."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise FixtureError(f"{path.name}: not a readable audio file ({type(exc).__name__})") from None
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with container:
            if not container.streams.audio:
                raise FixtureError(f"{path.name}: no audio stream")
            rate = container.streams.audio[0].codec_context.sample_rate or 0
            if not MIN_RATE <= rate <= MAX_RATE:
                # A tiny file declaring 1 Hz would decode (resampled to 48 kHz) to gigabytes.
                raise FixtureError(f"{path.name}: unsupported sample rate {rate} Hz ({MIN_RATE}-{MAX_RATE})")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += len(arr)
                if total > MAX_FIXTURE_SECONDS * SAMPLE_RATE:
                    raise FixtureError(f"{path.name}: longer than {MAX_FIXTURE_SECONDS} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except FixtureError:
        raise
    except (av.error.FFmpegError, ValueError, RuntimeError) as exc:
        raise FixtureError(f"{path.name}: corrupt audio ({type(exc).__name__})") from None
    if not chunks:
        raise FixtureError(f"{path.name}: no audio samples")
    return np.concatenate(chunks).astype(np.int16, copy=False)


def _read_meta(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    # ValueError covers JSONDecodeError, UnicodeDecodeError and integers past the digit limit;
    # RecursionError is what deeply nested arrays/objects raise.
    except (OSError, ValueError, RecursionError) as exc:
        raise FixtureError(f"{path.name}: invalid fixture.json ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise FixtureError(f"{path.name}: fixture.json must be an object")
    variables = meta.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise FixtureError(f"{path.name}: 'variables' must map names to strings")
    expected = meta.get("expected") or {}
    if not isinstance(expected, dict):
        raise FixtureError(f"{path.name}: 'expected' must be an object")
    return {str(k): v for k, v in variables.items()}, expected


def load_fixture(path: Path) -> Fixture:
    path = Path(path)
    if not path.exists():
        raise FixtureError(f"{path.name}: no such fixture")
    variables: dict[str, str] = {}
    expected: dict[str, Any] = {}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise FixtureError(f"{path.name}: directory has no audio files (.wav, .flac, .ogg, .opus)")
        meta = path / "fixture.json"
        if meta.exists():
            variables, expected = _read_meta(meta)
    else:
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            raise FixtureError(f"{path.name}: unsupported file type (use .wav, .flac, .ogg or .opus)")
        files = [path]
        side = path.with_suffix(".json")
        if side.exists():
            variables, expected = _read_meta(side)
    tracks = tuple(TrackSource(name=f.name, pcm=decode_audio(f)) for f in files)
    return Fixture(name=path.name, tracks=tracks, variables=variables, expected=expected)


def iter_frames(pcm: np.ndarray) -> Iterator[bytes]:
    """20 ms frames of s16le bytes; the last one is padded with silence."""
    n = len(pcm)
    for i in range(0, n, FRAME_SAMPLES):
        chunk = pcm[i : i + FRAME_SAMPLES]
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        yield chunk.tobytes()

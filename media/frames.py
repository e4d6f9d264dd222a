"""Audio frame values passed between the edges (fixture reader, WebRTC receiver) and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
ASR_RATE = 16_000


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One 20 ms Opus frame of one track.

    `timestamp` counts 48 kHz samples from the start of the track (RTP timestamp minus the first one), so
    gaps show up as jumps larger than FRAME_SAMPLES. `pcm` is the decoded 48 kHz mono s16le audio when the
    source already has it (a fixture); a live call leaves it None and the pipeline decodes off the loop.
    """

    payload: bytes
    timestamp: int
    pcm: bytes | None = None

"""Audio export of a recording's Opus frames (48 kHz timestamps): Ogg Opus (muxed, no re-encoding) or WAV.

One implementation for the CLI (`export`) and the admin API (`.../recording`). WAV fills gaps in the RTP
timeline (lost frames, DTX, a hold) with silence so the file keeps the call's timeline, bounded like the
speech path (`worker.calls.track`): one gap is filled with at most `MAX_GAP_S` of silence, and a whole export
with at most `max_silence_s` (callers pass `silence_budget_s`: the call's wall-clock length plus one gap), so
a sender whose timestamps run ahead of real time cannot make an export larger than the call was long. PCM
comes out in pieces of at most `PIECE_BYTES`: neither a file nor an HTTP stream ever holds more than one
piece.

Files are created owner-only (0600, also when they existed): exported audio is PHI.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.mulaw import CODEC as PCMU
from media.mulaw import MulawDecoder
from media.opus import OpusDecoder, OpusEncoder, OpusError, write_ogg_opus

MAX_GAP_S: Final = 60  # as the speech path: a longer jump is not filled further
PIECE_BYTES: Final = 1 << 20  # ~10.9 s of 48 kHz s16 mono
_UNKNOWN_SIZE: Final = 0xFFFFFFFF  # streamed: sizes unknown up front (players read to the end)
_HEADER_BYTES: Final = 44
_SILENT_FRAME: Final = bytes(FRAME_SAMPLES * 2)


def silence_budget_s(started_at: str, ended_at: str | None, now: datetime) -> float:
    """Silence a call's export may hold: its wall-clock length (to `now` if it has not ended) plus one gap."""
    start = datetime.fromisoformat(started_at)
    end = datetime.fromisoformat(ended_at) if ended_at else now
    return max(0.0, (end - start).total_seconds()) + MAX_GAP_S


def ogg_bytes(frames: Sequence[tuple[int, bytes]]) -> bytes:
    """Mux Opus packets into an in-memory Ogg Opus file (about the size of the packets)."""
    buf = io.BytesIO()
    write_ogg_opus(buf, frames)
    return buf.getvalue()


def as_opus(frames: Sequence[tuple[int, bytes]], codec: str = "opus") -> Sequence[tuple[int, bytes]]:
    """The recording's frames as Opus packets for Ogg: as they are, or transcoded from mu-law (media
    streams; the recording header's codec says which). Blocking (encoding): call off the event loop."""
    if codec != PCMU:
        return frames
    dec, enc, out = MulawDecoder(), OpusEncoder(), []
    for ts, payload in frames:
        pcm = dec.decode(payload)  # 48 kHz; a 20 ms chunk is one 20 ms Opus frame
        pcm += bytes(-len(pcm) % (2 * FRAME_SAMPLES))
        for i in range(0, len(pcm), 2 * FRAME_SAMPLES):
            out.append((ts + i // 2, enc.encode(pcm[i : i + 2 * FRAME_SAMPLES])))
    return out


def wav_header(data_bytes: int | None = None, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono RIFF/WAVE header; `data_bytes=None` (or past 4 GiB) for a stream of unknown length."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    known = data_bytes is not None and data_bytes + _HEADER_BYTES - 8 <= _UNKNOWN_SIZE
    riff = data_bytes + _HEADER_BYTES - 8 if known and data_bytes is not None else _UNKNOWN_SIZE
    data = data_bytes if known and data_bytes is not None else _UNKNOWN_SIZE
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data)
    )


def pcm_pieces(
    frames: Iterable[tuple[int, bytes]], *, max_silence_s: float, codec: str = "opus"
) -> Iterator[bytes]:
    """Decoded 48 kHz s16 mono PCM of `frames` in pieces of at most `PIECE_BYTES`, gaps as bounded silence.

    A frame that does not decode is a frame of silence. Blocking (decoding): iterate off the event loop.
    """
    dec = MulawDecoder() if codec == PCMU else OpusDecoder()  # both decode to the 48 kHz timeline
    budget = max(0, int(max_silence_s * SAMPLE_RATE))  # samples of gap silence still allowed
    buf = bytearray()
    expected = 0
    for ts, payload in frames:
        fill = min(ts - expected, MAX_GAP_S * SAMPLE_RATE, budget) if ts > expected else 0
        budget -= fill
        while fill > 0:
            step = min(fill, (PIECE_BYTES - len(buf)) // 2)
            buf += bytes(step * 2)
            fill -= step
            if len(buf) >= PIECE_BYTES:
                yield bytes(buf)
                buf.clear()
        try:
            pcm = dec.decode(payload)
        except OpusError:
            pcm = _SILENT_FRAME
        buf += pcm
        expected = ts + len(pcm) // 2  # packets last 2.5-120 ms (RFC 6716): the next starts where this ends
        if len(buf) >= PIECE_BYTES:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _open_private(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
    return fd


def write_ogg_file(path: Path, frames: Sequence[tuple[int, bytes]]) -> int:
    """Write an owner-only Ogg Opus file; returns its size in bytes."""
    data = ogg_bytes(frames)
    with os.fdopen(_open_private(path), "wb") as f:
        f.write(data)
    return len(data)


def write_wav_file(
    path: Path, frames: Iterable[tuple[int, bytes]], *, max_silence_s: float, codec: str = "opus"
) -> int:
    """Write an owner-only WAV file piece by piece (bounded memory); returns its size in bytes."""
    with os.fdopen(_open_private(path), "wb") as f:
        f.write(wav_header(None))
        size = 0
        for piece in pcm_pieces(frames, max_silence_s=max_silence_s, codec=codec):
            f.write(piece)
            size += len(piece)
        f.seek(0)
        f.write(wav_header(size))
    return _HEADER_BYTES + size

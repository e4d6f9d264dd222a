"""Segmenter state machine with scripted frame classes: start/end hysteresis, pre-roll, min length,
max-length split at the quietest point, partial cadence, flush, energy gate; plus webrtcvad on fixtures."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from media.events import PartialAudio, SpeechStarted, Utterance
from media.vad import Event, Segmenter, VadConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FRAME = 320  # 20 ms at 16 kHz
LOUD, QUIET, FAINT = 3000, 600, 20  # sample amplitudes: about -21, -35 and -64 dBFS


def frame(amplitude: int, marker: int = 0) -> bytes:
    x = np.full(FRAME, amplitude, dtype="<i2")
    x[0] = amplitude + marker  # lets a test find a given frame inside an utterance's PCM
    return x.tobytes()


def scripted(frame_bytes: bytes) -> bool:
    """The 'model': any frame not digital silence is speech (so the energy gate is what rejects FAINT)."""
    return bool(np.frombuffer(frame_bytes, dtype="<i2").any())


def cfg(**kw: float | int | None) -> VadConfig:
    base: dict[str, float | int | None] = dict(min_speech=0.1, end_silence=0.3, pre_roll=0.2, post_roll=0.1)
    base.update(kw)
    return VadConfig(**base)  # type: ignore[arg-type]


def run(seg: Segmenter, pattern: str, *, chunk_frames: int = 1, t0: float = 0.0) -> list[Event]:
    """Feed a pattern of frames: '.' silence, 'V' loud voice, 'q' quiet voice, 'f' faint (gated)."""
    amp = {".": 0, "V": LOUD, "q": QUIET, "f": FAINT}
    pcm = b"".join(frame(amp[c]) for c in pattern)
    events: list[Event] = []
    step = chunk_frames * FRAME * 2 // 2 if chunk_frames else FRAME * 2
    t = t0
    for off in range(0, len(pcm), step):
        piece = pcm[off : off + step]
        t += len(piece) / 32000
        events += seg.feed(piece, t)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_start_end_times_and_pre_roll() -> None:
    seg = Segmenter(cfg(), scripted)
    events = run(seg, "." * 25 + "V" * 50 + "." * 50)  # speech 0.5 s .. 1.5 s
    assert kinds(events) == ["SpeechStarted", "Utterance"]
    started, utt = events
    assert isinstance(started, SpeechStarted) and isinstance(utt, Utterance)
    assert started.start == pytest.approx(0.3)  # 0.5 - 0.2 pre-roll
    assert utt.start == pytest.approx(0.3)
    assert utt.speech_end == pytest.approx(1.5)
    assert utt.end == pytest.approx(1.6)  # post_roll 0.1
    assert len(utt.pcm) == round((utt.end - utt.start) * 32000)
    assert not utt.split
    # The first 0.2 s of the utterance is the pre-roll (silence), then the first voiced frame.
    head = np.frombuffer(utt.pcm, dtype="<i2")
    assert not head[: 10 * FRAME].any() and head[10 * FRAME] == LOUD


@pytest.mark.parametrize("chunk", [1, 3, 5])  # 10 ms, 30 ms, 50 ms pieces: the result must not change
def test_any_multiple_of_10ms_gives_same_events(chunk: int) -> None:
    pattern = "." * 25 + "V" * 50 + "." * 50
    ref = run(Segmenter(cfg(), scripted), pattern)
    got = run(Segmenter(cfg(), scripted), pattern, chunk_frames=chunk)
    assert got == ref


def test_start_hysteresis_needs_n_of_m() -> None:
    seg = Segmenter(cfg(start_voiced=4, start_window=6), scripted)
    assert run(seg, ("V.." * 30) + "." * 30) == []  # 2 of every 6 frames voiced: never starts
    events = run(seg, "VV.VV" + "V" * 20 + "." * 30, t0=2.4)
    assert kinds(events) == ["SpeechStarted", "Utterance"]


def test_short_burst_is_dropped_without_events() -> None:
    seg = Segmenter(cfg(min_speech=0.2), scripted)
    assert run(seg, "." * 10 + "V" * 9 + "." * 40) == []  # 0.18 s of voice < 0.2 s
    events = run(seg, "V" * 10 + "." * 40, t0=1.18)
    assert kinds(events) == ["SpeechStarted", "Utterance"]


def test_end_hangover_bridges_short_pauses() -> None:
    seg = Segmenter(cfg(end_silence=0.3), scripted)
    events = run(seg, "V" * 20 + "." * 14 + "V" * 20 + "." * 20)  # 0.28 s pause < 0.3 s hangover
    assert kinds(events) == ["SpeechStarted", "Utterance"]
    seg = Segmenter(cfg(end_silence=0.3), scripted)
    events = run(seg, "V" * 20 + "." * 15 + "V" * 20 + "." * 20)  # 0.30 s pause ends it
    assert kinds(events) == ["SpeechStarted", "Utterance", "SpeechStarted", "Utterance"]


def test_max_length_splits_at_quietest_recent_frame() -> None:
    seg = Segmenter(cfg(max_utterance=2.0, split_search=1.0, pre_roll=0.0), scripted)
    # Voice from 0 s; a quiet frame at 1.40-1.42 s inside the 1 s search window; one at 0.5 s is older.
    pattern = "V" * 25 + "q" + "V" * 44 + "q" + "V" * 60 + "." * 30
    events = run(seg, pattern)
    assert kinds(events) == ["SpeechStarted", "Utterance", "SpeechStarted", "Utterance"]
    first, second = events[1], events[3]
    assert isinstance(first, Utterance) and isinstance(second, Utterance)
    assert first.split and not second.split
    assert first.start == pytest.approx(0.0)
    assert first.end == pytest.approx(1.42)
    assert second.start == pytest.approx(1.42)  # contiguous: nothing lost, nothing doubled
    assert second.speech_end == pytest.approx(2.62)
    assert len(first.pcm) + len(second.pcm) == round((second.end - first.start) * 32000)


def test_partial_cadence() -> None:
    seg = Segmenter(cfg(partial_interval=0.5, pre_roll=0.0), scripted)
    events = run(seg, "V" * 80 + "." * 30)  # 1.6 s of speech
    partials = [e for e in events if isinstance(e, PartialAudio)]
    assert [round(p.end, 2) for p in partials] == [0.5, 1.0, 1.5]
    assert all(p.start == 0.0 and len(p.pcm) == round(p.end * 32000) for p in partials)
    assert isinstance(events[-1], Utterance)


def test_flush_mid_utterance() -> None:
    seg = Segmenter(cfg(), scripted)
    events = run(seg, "." * 10 + "V" * 30)
    assert kinds(events) == ["SpeechStarted"]
    assert seg.in_speech
    tail = seg.flush(0.8)
    assert kinds(tail) == ["Utterance"]
    utt = tail[0]
    assert isinstance(utt, Utterance)
    assert utt.speech_end == pytest.approx(0.8) and utt.end == pytest.approx(0.8)
    assert not seg.in_speech and seg.flush(0.8) == []


def test_a_jump_in_time_ends_the_open_utterance() -> None:
    """A track whose timeline jumps (a minute on hold, not filled with silence) while speech is open: the
    utterance ends where its audio did; speech after the jump is a new utterance (no split over the gap)."""
    seg = Segmenter(cfg(max_utterance=15.0), scripted)
    events = run(seg, "." * 10 + "V" * 30)  # speech from 0.2 s, still open at 0.8 s
    assert kinds(events) == ["SpeechStarted"]
    events = run(seg, "V" * 30 + "." * 30, t0=61.0)
    assert kinds(events) == ["Utterance", "SpeechStarted", "Utterance"]
    first, _, second = events
    assert isinstance(first, Utterance) and isinstance(second, Utterance)
    assert first.speech_end == pytest.approx(0.8) and not first.split
    assert second.start == pytest.approx(61.0) and second.speech_end == pytest.approx(61.6)


def test_energy_gate_overrides_classifier() -> None:
    seg = Segmenter(cfg(), scripted)  # `scripted` calls every non-zero frame speech
    assert run(seg, "f" * 200) == []  # ... but -64 dBFS is under the -50 dBFS floor


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        VadConfig(frame_ms=15)
    with pytest.raises(ValueError, match="start_voiced"):
        VadConfig(start_voiced=7, start_window=6)


def _wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000
        return w.readframes(w.getnframes())


def _segment(pcm: bytes) -> list[Event]:
    seg = Segmenter()
    events: list[Event] = []
    for off in range(0, len(pcm) - 639, 640):
        events += seg.feed(pcm[off : off + 640], (off + 640) / 32000)
    return events + seg.flush(len(pcm) / 32000)


@pytest.mark.parametrize("name", ["silence.wav", "noise.wav"])
def test_webrtcvad_finds_no_speech_in_silence_or_noise(name: str) -> None:
    assert [e for e in _segment(_wav(FIXTURES / name)) if isinstance(e, Utterance)] == []

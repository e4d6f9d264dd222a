"""The real tiny.en model on committed fixtures: expected words (with word times) from the example call,
no text from silence-only and noise-only audio, in both the short-window and the padded mode."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import pytest

from media.asr import Guards, WhisperTranscriber
from media.events import Utterance
from media.vad import Event, Segmenter
from media.wer import normalize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def decode_16k(path: Path) -> bytes:
    """Any audio file -> 16 kHz mono s16le, with PyAV."""
    out: list[bytes] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().tobytes() for f in resampler.resample(frame)]
        out += [f.to_ndarray().tobytes() for f in resampler.resample(None)]
    return b"".join(out)


def utterances(pcm: bytes) -> list[Utterance]:
    seg = Segmenter()
    events: list[Event] = []
    for off in range(0, len(pcm) - 639, 640):
        events += seg.feed(pcm[off : off + 640], (off + 640) / 32_000)
    events += seg.flush(len(pcm) / 32_000)
    return [e for e in events if isinstance(e, Utterance)]


@pytest.fixture(scope="module")
def short() -> WhisperTranscriber:
    return WhisperTranscriber()


@pytest.fixture(scope="module")
def padded() -> WhisperTranscriber:
    return WhisperTranscriber(short_window=False)


def test_example_call_gives_expected_words_and_word_times(short: WhisperTranscriber) -> None:
    utts = utterances(decode_16k(FIXTURES / "example_call.flac"))
    assert len(utts) == 2
    first, second = (short.transcribe(u.pcm) for u in utts)
    assert {"like", "appointment", "next", "week"} <= set(normalize(first.text))
    assert {"tuesday", "morning"} <= set(normalize(second.text))
    for tr, utt in ((first, utts[0]), (second, utts[1])):
        assert tr.words, "short-window mode returns word timestamps"
        starts = [w.start for w in tr.words]
        assert starts == sorted(starts)
        assert 0.0 <= tr.words[0].start and tr.words[-1].end <= utt.end - utt.start + 0.5


def test_partial_skips_word_times(short: WhisperTranscriber) -> None:
    utt = utterances(decode_16k(FIXTURES / "example_call.flac"))[1]
    tr = short.transcribe(utt.pcm, partial=True)
    assert "tuesday" in normalize(tr.text) and tr.words == ()


def test_padded_baseline_words(padded: WhisperTranscriber) -> None:
    utt = utterances(decode_16k(FIXTURES / "example_call.flac"))[1]
    tr = padded.transcribe(utt.pcm)
    assert {"tuesday", "morning"} <= set(normalize(tr.text))
    assert [w.word.strip(".,").lower() for w in tr.words][:1] == ["tuesday"]


def _wav(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as w:
        return w.readframes(w.getnframes())


@pytest.mark.parametrize("name", ["silence.wav", "noise.wav"])
@pytest.mark.parametrize("mode", ["short", "padded"])
def test_silence_and_noise_give_no_text(name: str, mode: str, short: WhisperTranscriber,
                                        padded: WhisperTranscriber) -> None:  # fmt: skip
    transcriber = short if mode == "short" else padded
    pcm = _wav(name)
    assert transcriber.transcribe(pcm).text == ""
    # Without the energy gate the model's own evidence (no-speech probability, log-prob) must hold too.
    guards = transcriber.guards
    try:
        transcriber.guards = Guards(min_rms_dbfs=-200.0)
        assert transcriber.transcribe(pcm).text == ""
    finally:
        transcriber.guards = guards

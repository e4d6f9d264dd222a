"""Events returned by the sans-IO media stages. Frozen and slotted: values, not objects with behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The segmenter opened an utterance. `start` is seconds of track audio (pre-roll included)."""

    start: float


@dataclass(frozen=True, slots=True)
class Utterance:
    """A finished utterance: 16 kHz mono s16le PCM from `start` to `end` (seconds of track audio).

    `speech_end` is where the last voiced frame ended (the end of speech used for time-to-final);
    `end` may be a little later because of the hangover.
    """

    pcm: bytes
    start: float
    end: float
    speech_end: float
    split: bool = False  # True when cut at max length, not at silence


@dataclass(frozen=True, slots=True)
class PartialAudio:
    """Audio of the utterance in progress, offered for an interim (partial) transcript."""

    pcm: bytes
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a `Transcriber` returns for one utterance. Times are relative to the utterance start."""

    text: str
    words: tuple[Word, ...] = field(default=())
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    rejected: str | None = None  # why the guards dropped the text (`media.asr` reasons); None if kept

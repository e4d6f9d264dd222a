"""Speech the model could not read is stored as [inaudible] with its times; silence-like inventions are
dropped; both are counted. And the guards keep digit runs (what callers read out), however the decoder
grouped or stuttered on them (tiny.en's int8 kernels on AVX-512 VNNI CPUs give "40010011-1011-10011-...")."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from media.asr import (
    INAUDIBLE,
    Guards,
    guard_verdict,
)
from media.events import Transcript
from storage.memory import MemoryTranscriptStore
from tests.support import replay_in_process

GROUPS = "4111 1111 1111 1111 4111 1111 1111 1111"
STUTTER = "My card number is 40010011-1011-10011-1011-10011-1011-10011-1011-10011-1011-10011-1011-10011-100"


@pytest.mark.parametrize(
    ("text", "no_speech", "logprob", "kept", "reason"),
    [
        (STUTTER, 0.38, -0.47, STUTTER, None),  # digits repeat: kept for the redactor
        (GROUPS, 0.1, -0.3, GROUPS, None),
        ("six one seven 5 5 5 0 0 0 0 0 0 0", 0.1, -0.3, "six one seven 5 5 5 0 0 0 0 0 0 0", None),
        ("Sure... Sure... Sure... Sure... Sure... Sure... Sure", 0.1, -0.3, "", "repetition"),
        ("the the the the the the the the", 0.0, -0.2, "", "repetition"),
        ("Thank you.", 0.5, -0.3, "", "blacklist"),
        ("Hello there.", 0.9, -1.2, "", "no_speech"),
        ("Hello there.", 0.0, -2.0, "", "low_confidence"),
        ("[Music]", 0.0, -0.2, "", None),
        ("Hello there.", 0.0, -0.2, "Hello there.", None),
    ],
)  # fmt: skip
def test_guard_verdicts(text: str, no_speech: float, logprob: float, kept: str, reason: str | None) -> None:
    assert guard_verdict(text, no_speech, logprob, Guards()) == (kept, reason)


class _Rejecting:
    """A transcriber whose every output the guards rejected, for the given reason (None: kept text)."""

    def __init__(self, outcomes: list[tuple[str, str | None]]) -> None:
        self._outcomes = outcomes
        self._next = 0
        self._lock = threading.Lock()

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        with self._lock:
            text, why = self._outcomes[self._next % len(self._outcomes)]
            self._next += 1
        return Transcript(text=text, no_speech_prob=0.1, avg_logprob=-0.3, rejected=why)


@pytest.mark.parametrize(
    ("reason", "stored"),
    [("repetition", [INAUDIBLE]), ("low_confidence", [INAUDIBLE]), ("blacklist", []), ("no_speech", [])],
)
async def test_rejected_speech_is_stored_as_inaudible_or_counted(
    tmp_path: Path, reason: str, stored: list[str]
) -> None:
    transcripts = MemoryTranscriptStore()
    summary, metrics = await replay_in_process(_Rejecting([("", reason)]), transcripts, tmp_path)
    utts = await transcripts.get_utterances(summary.call_id)
    turns = metrics.registry.get_sample_value("converse_utterances_rejected_total", {"reason": reason})
    assert turns is not None and turns >= 1
    if stored:
        assert len(utts) == turns and {u.text for u in utts} == set(stored)
        assert all(0 <= u.start < u.end for u in utts)  # the turn keeps its times
    else:
        assert utts == []

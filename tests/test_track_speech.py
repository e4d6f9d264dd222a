"""TrackSpeech (decode -> 16 kHz -> VAD per track): a batch gives exactly the events of its frames one by one.

The engine hands the speech thread ~0.1 s batches; `process` resamples and segments each contiguous run of a
batch in one call. These tests pin that batching changes nothing: not the utterances' audio, not their times,
not across lost frames, partial-frame gaps or long gaps.
"""

from __future__ import annotations

import itertools

import av
from hypothesis import given, settings
from hypothesis import strategies as st

from media.events import PartialAudio, SpeechStarted, Utterance
from media.frames import FRAME_SAMPLES, SAMPLE_RATE, EncodedFrame
from media.vad import VadConfig
from worker.track import TrackSpeech


def _payloads(path: str = "fixtures/bench/00.opus", seconds: float = 12.0) -> list[bytes]:
    with av.open(path) as container:
        packets = [bytes(p) for p in container.demux(audio=0) if p.size]
    return packets[: int(seconds * 50)]


PAYLOADS = _payloads()


def _frames(drop: set[int], shifts: dict[int, int]) -> list[EncodedFrame]:
    """Frame i at 960 * i, minus the dropped ones; from frame k on, timestamps move by shifts[k] samples."""
    out: list[EncodedFrame] = []
    offset = 0
    for i, payload in enumerate(PAYLOADS):
        offset += shifts.get(i, 0)
        if i not in drop:
            out.append(EncodedFrame(payload=payload, timestamp=i * FRAME_SAMPLES + offset))
    return out


def _run(frames: list[EncodedFrame], cuts: list[int]) -> list[object]:
    speech = TrackSpeech(partials=True, vad=VadConfig(partial_interval=0.5))
    events: list[object] = []
    bounds = [0, *sorted({c % (len(frames) + 1) for c in cuts}), len(frames)]
    for a, b in itertools.pairwise(bounds):
        events += speech.process(frames[a:b], False, True)
    events += speech.process([], True, True)
    return events


def test_fixture_speech_is_found() -> None:
    events = _run(_frames(set(), {}), [])
    assert sum(isinstance(e, Utterance) for e in events) >= 2
    assert any(isinstance(e, SpeechStarted) for e in events)
    assert any(isinstance(e, PartialAudio) for e in events)


@settings(max_examples=12, deadline=None)
@given(
    drop=st.sets(st.integers(0, len(PAYLOADS) - 1), max_size=40),
    shifts=st.dictionaries(
        st.integers(1, len(PAYLOADS) - 1),
        # part of a frame (a jump the silence fill cannot cover), whole frames, or over a minute (not filled)
        st.sampled_from([FRAME_SAMPLES // 3, 2 * FRAME_SAMPLES, 61 * SAMPLE_RATE]),
        max_size=3,
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=60),
)
def test_batches_give_the_events_of_single_frames(
    drop: set[int], shifts: dict[int, int], cuts: list[int]
) -> None:
    frames = _frames(drop, shifts)
    one_by_one = _run(frames, list(range(1, len(frames))))
    assert _run(frames, cuts) == one_by_one
    assert _run(frames, []) == one_by_one  # the whole call as one batch

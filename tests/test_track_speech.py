"""TrackSpeech (decode -> 16 kHz -> VAD per track): a batch gives exactly the events of its frames one by one.

The engine hands the speech thread ~0.1 s batches; `process` resamples and segments each contiguous run of a
batch in one call. These tests pin that batching changes nothing: not the utterances' audio, not their times,
not across lost frames, partial-frame gaps or long gaps.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.events import PartialAudio, SpeechStarted, Utterance
from media.frames import FRAME_SAMPLES, SAMPLE_RATE, EncodedFrame
from media.opus import OpusEncoder
from media.vad import Event, Segmenter, VadConfig
from worker.calls.track import TrackSpeech


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


# -- packet durations (issue 18 item 2): the timeline follows decoded sample counts and RTP timestamps ------

DURATIONS = [120, 240, 480, 960, 1920, 2880, 5760]  # 2.5, 5, 10, 20, 40, 60, 120 ms (RFC 6716 2.1.4)


class _Spy(Segmenter):
    """The real segmenter, recording the 16 kHz PCM it is given and the `now` of each feed."""

    def __init__(self, config: VadConfig) -> None:
        super().__init__(config)
        self.pcm = bytearray()
        self.nows: list[float] = []

    def feed(self, pcm16k: bytes, now: float) -> list[Event]:
        self.pcm += pcm16k
        self.nows.append(now)
        return super().feed(pcm16k, now)


def _spied() -> tuple[TrackSpeech, _Spy]:
    speech = TrackSpeech()
    spy = _Spy(VadConfig())
    speech._segmenter = spy
    return speech, spy


def _pcm48(seconds: float = 12.0) -> bytes:
    from media.fixtures import decode_audio

    pcm = decode_audio(Path("fixtures/bench/00.opus"))[: int(seconds * SAMPLE_RATE)]
    return bytes(pcm[: len(pcm) - len(pcm) % 5760].tobytes())  # whole packets at every duration


PCM48 = _pcm48()


def _packets(pcm: bytes, samples: int) -> list[EncodedFrame]:
    step = 2 * samples
    return [
        EncodedFrame(payload=b"", timestamp=i // 2, pcm=pcm[i : i + step]) for i in range(0, len(pcm), step)
    ]


def _feed(speech: TrackSpeech, frames: list[EncodedFrame], batch: int = 5) -> list[object]:
    events: list[object] = []
    for i in range(0, len(frames), batch):
        events += speech.process(frames[i : i + batch], False, False)
    return events + speech.process([], True, False)


@pytest.mark.parametrize("samples", DURATIONS)
def test_every_packet_duration_gives_the_segmenter_the_same_pcm(samples: int) -> None:
    ref_speech, ref = _spied()
    ref_events = _feed(ref_speech, _packets(PCM48, FRAME_SAMPLES))
    speech, spy = _spied()
    events = _feed(speech, _packets(PCM48, samples))
    assert bytes(spy.pcm) == bytes(ref.pcm) and len(spy.pcm) == len(PCM48) // 3
    assert spy.nows == sorted(spy.nows) and spy.nows[-1] == len(PCM48) // 2 / SAMPLE_RATE
    assert speech.heard_s == len(PCM48) // 2 / SAMPLE_RATE
    assert events == ref_events and any(isinstance(e, Utterance) for e in events)


@pytest.mark.parametrize("samples", [480, 1920, 2880])
def test_a_lost_packet_is_silence_as_long_as_it_was(samples: int) -> None:
    frames = _packets(PCM48, samples)
    lost = len(frames) // 2
    speech, spy = _spied()
    _feed(speech, frames[:lost] + frames[lost + 1 :])
    want = bytearray(PCM48)
    a = lost * samples * 2
    want[a : a + samples * 2] = bytes(samples * 2)
    ref_speech, ref = _spied()
    _feed(ref_speech, _packets(bytes(want), FRAME_SAMPLES))
    assert bytes(spy.pcm) == bytes(ref.pcm)


def test_timestamps_that_overlap_cut_the_front_and_never_run_the_clock_back() -> None:
    speech, spy = _spied()
    pcm = PCM48[: 2 * 4800]
    # 20 ms of PCM stamped every 10 ms: each packet's first half overlaps the one before.
    frames = [EncodedFrame(b"", 480 * i, pcm[960 * i : 960 * i + 1920]) for i in range(8)]
    speech.process(frames, True, False)
    assert spy.nows == sorted(spy.nows)
    assert speech.heard_s == (480 * 7 + 960) / SAMPLE_RATE
    assert speech.overlap_samples == 7 * 480


@pytest.mark.parametrize("samples", DURATIONS)
def test_real_opus_packets_of_any_duration_find_the_same_speech(samples: int) -> None:
    pcm = np.frombuffer(PCM48, dtype=np.int16)
    encoder = OpusEncoder(frame_samples=samples)
    payloads = [encoder.encode(bytes(pcm[i : i + samples])) for i in range(0, len(pcm), samples)]
    frames = [EncodedFrame(payload=p, timestamp=i * samples) for i, p in enumerate(payloads)]
    speech, spy = _spied()
    utts = [e for e in _feed(speech, frames) if isinstance(e, Utterance)]
    ref = [e for e in _feed(TrackSpeech(), _packets(PCM48, FRAME_SAMPLES)) if isinstance(e, Utterance)]
    assert len(spy.pcm) == len(PCM48) // 3  # as long as the input, whatever the packet size
    assert speech.decode_errors == 0
    assert len(utts) == len(ref)
    for got, want in zip(utts, ref, strict=True):
        assert abs(got.start - want.start) < 0.1 and abs(got.end - want.end) < 0.15

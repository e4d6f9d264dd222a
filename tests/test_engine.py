"""Engine wiring with in-package fakes: ordering, fail-closed redaction, ASR failure, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media.asr import AsrScheduler, FakeTranscriber
from media.fixtures import load_fixture
from media.recording import read_recording
from storage.keys import LocalKeyFile, track_key_context
from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
from tests.support import FIXTURES
from worker.calls.engine import Engine, EngineConfig, RedactFn
from worker.calls.replay import replay_one
from worker.metrics import Metrics

PHI_LINE = "Call me at 555-123-4567 about the appointment."


@pytest.fixture
def stores() -> tuple[MemoryTranscriptStore, MemoryRecordingStore]:
    return MemoryTranscriptStore(), MemoryRecordingStore()


@pytest.fixture
async def make_engine(
    stores: tuple[MemoryTranscriptStore, MemoryRecordingStore], tmp_path: Path
) -> AsyncIterator[object]:
    schedulers: list[AsrScheduler] = []

    def make(transcriber: FakeTranscriber, redactor: RedactFn | None = None) -> Engine:
        sched = AsrScheduler(transcriber, workers=2)
        schedulers.append(sched)
        return Engine(
            transcripts=stores[0],
            recordings=stores[1],
            keys=LocalKeyFile(tmp_path / "kek.json"),
            asr=sched,
            metrics=Metrics(),
            redactor=redactor,
            config=EngineConfig(flush_interval_s=0.05),
        )

    yield make
    for s in schedulers:
        await s.aclose()


async def test_replay_stores_only_redacted_text_and_sealed_audio(make_engine, stores, tmp_path: Path) -> None:
    engine: Engine = make_engine(FakeTranscriber([PHI_LINE]))
    fixture = load_fixture(FIXTURES / "example_call.flac")
    events: list[dict] = []
    summary = await replay_one(engine, fixture, realtime=False, emit=events.append)
    assert summary.frames_lost == 0
    assert summary.frames_sealed == summary.frames_received > 0
    assert summary.utterances >= 1
    utts = await stores[0].get_utterances(summary.call_id)
    assert utts and all(u.text == "Call me at [PHONE] about the appointment." for u in utts)
    assert all(u.redactions == {"PHONE": 1} for u in utts)
    raw = await stores[1].read_track(summary.call_id, 0)
    assert b"555" not in raw
    info = await stores[0].get_track(summary.call_id, 0)
    keys = LocalKeyFile(tmp_path / "kek.json")
    rec = read_recording(raw, lambda h: keys.unwrap(info.wrapped_key, track_key_context(summary.call_id, 0)))
    assert rec.complete and len(rec.frames) == summary.frames_sealed
    assert [ts for ts, _ in rec.frames] == [i * 960 for i in range(len(rec.frames))]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended" and "final" in kinds


def _boom(text: str, variables: object) -> tuple[str, dict[str, int]]:
    raise RuntimeError("redactor exploded on " + text)  # the text must not reach logs or storage


async def test_redaction_failure_writes_nothing(
    make_engine, stores, capsys: pytest.CaptureFixture[str]
) -> None:
    engine: Engine = make_engine(FakeTranscriber([PHI_LINE]), RedactFn(_boom))
    fixture = load_fixture(FIXTURES / "example_call.flac")
    summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    assert summary.utterances == 0 and summary.failed_utterances >= 1
    assert await stores[0].get_utterances(summary.call_id) == []
    failed = engine.metrics.utterances_failed.labels("redaction")._value.get()
    assert failed == summary.failed_utterances
    captured = capsys.readouterr()
    assert "555" not in captured.out + captured.err
    # Audio is still sealed in full: a redaction failure loses text, never audio.
    assert summary.frames_sealed == summary.frames_received


async def test_asr_failure_is_counted_and_call_continues(make_engine, stores) -> None:
    def fail(pcm: bytes, partial: bool) -> str:
        raise RuntimeError("model crashed")

    engine: Engine = make_engine(FakeTranscriber(fail))
    fixture = load_fixture(FIXTURES / "example_call.flac")
    summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    assert summary.status == "ended"
    assert summary.failed_utterances >= 1
    assert summary.frames_sealed == summary.frames_received


async def test_cancel_mid_call_leaves_no_task_and_seals_what_was_pushed(make_engine, stores) -> None:
    engine: Engine = make_engine(FakeTranscriber([PHI_LINE], delay=0.2))
    fixture = load_fixture(FIXTURES / "example_call.flac")
    events: list[dict] = []
    before = set(asyncio.all_tasks())
    task = asyncio.create_task(replay_one(engine, fixture, realtime=True, emit=events.append))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert leftover == []
    call_id = events[0]["call_id"]
    call = await stores[0].get_call(call_id)
    assert call.status == "failed"
    for u in await stores[0].get_utterances(call_id):
        assert "555" not in u.text
    info = await stores[0].get_track(call_id, 0)
    assert info.frames_sealed == info.frames_received > 0
    assert engine.active_calls() == []


async def test_slow_transcriber_does_not_block_event_loop(make_engine) -> None:
    # A transcriber that blocks 1 s per utterance: on the loop, the probe would see a lag of 1 s or more.
    # The bound leaves room for a loaded CI host (a full suite on 2 cores once stalled the loop 0.26 s).
    engine: Engine = make_engine(FakeTranscriber([PHI_LINE], delay=1.0))
    fixture = load_fixture(FIXTURES / "example_call.flac")
    lags: list[float] = []

    async def probe() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    p = asyncio.create_task(probe())
    summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    p.cancel()
    assert summary.utterances >= 1
    assert max(lags) < 0.5, f"event loop lag {max(lags):.3f}s"


async def test_an_answer_waits_for_the_question_of_a_lagging_track(
    make_engine, stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redaction context is the previous turn by audio time even when one track's segmenter lags far
    behind the other's (a fast replay on a loaded worker): the answer waits for the question."""
    import itertools

    import worker.calls.engine as engine_mod

    made = itertools.count()

    class LaggingSpeech(engine_mod.TrackSpeech):  # type: ignore[misc]
        """Track 0's decode/VAD is slow: 40 ms of thread time per batch."""

        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)
            self.slow = next(made) == 0

        def process(self, batch, ended, partials):  # type: ignore[no-untyped-def]
            if self.slow:
                time.sleep(0.04)
            return super().process(batch, ended, partials)

    monkeypatch.setattr(engine_mod, "TrackSpeech", LaggingSpeech)
    counter = itertools.count()
    seen: dict[str, str | None] = {}

    def redact_with_context(
        text: str, variables: object, context: str | None = None
    ) -> tuple[str, dict[str, int]]:
        seen[text] = context
        return text, {}

    transcriber = FakeTranscriber(lambda pcm, partial: f"turn {next(counter)}")
    engine: Engine = make_engine(transcriber, RedactFn(redact_with_context, takes_context=True))

    async def own_hop(speech, batch, ended, partials):  # type: ignore[no-untyped-def]
        # A hop per track (the speech pool would put both tracks' batches in one hop, and track 0's slowness
        # would hold track 1 back too): here the lag stays track 0's alone.
        return await asyncio.to_thread(speech.process, batch, ended, partials)

    monkeypatch.setattr(engine.speech, "process", own_hop)
    fixture = load_fixture(FIXTURES / "call_phi")
    summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    turns = sorted(await stores[0].get_utterances(summary.call_id), key=lambda u: u.end)
    assert {u.track for u in turns} == {0, 1} and len(turns) >= 4
    for u in turns:
        earlier = [t for t in turns if t is not u and u.start - 20.0 <= t.end <= u.start + 0.3]
        expected = max(earlier, key=lambda t: t.end).text if earlier else None
        assert seen[u.text] == expected, (u.track, u.start, u.text)


async def test_partials_reach_a_live_viewer_when_enabled(
    stores: tuple[MemoryTranscriptStore, MemoryRecordingStore], tmp_path: Path
) -> None:
    """`partials=True` (CONVERSE_PARTIALS): while someone watches, utterances in progress are transcribed
    about once a second and published as "partial" events before their final."""
    sched = AsrScheduler(FakeTranscriber(lambda pcm, partial: "interim" if partial else "done"), workers=2)
    engine = Engine(
        transcripts=stores[0],
        recordings=stores[1],
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=sched,
        metrics=Metrics(),
        config=EngineConfig(flush_interval_s=0.05, partials=True),
    )
    fixture = load_fixture(FIXTURES / "example_call.flac")
    seen: list[tuple[str, str]] = []
    started = asyncio.Event()

    async def watch() -> None:
        await started.wait()
        (call,) = engine.active_calls()
        async for ev in call.live():
            seen.append((ev.kind, ev.text))

    try:
        async with asyncio.TaskGroup() as tg:
            viewer = tg.create_task(watch())
            await replay_one(engine, fixture, realtime=True, emit=lambda e: started.set())
            await asyncio.wait_for(viewer, 5)
    finally:
        await sched.aclose()
    kinds = [k for k, _ in seen]
    assert "partial" in kinds and "final" in kinds
    assert kinds.index("partial") < kinds.index("final")
    assert {t for k, t in seen if k == "partial"} == {"interim"}

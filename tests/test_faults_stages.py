"""Fault injection in each stage of a call (flush, final, speech, ASR) while its queues are full: the call
always ends in bounded time, keeps every frame it received (sealed, in order, recording closed), says why
it failed, and other calls on the same engine go on. Fakes for the model and the stores (fast); the same
faults against a real `serve` are in tests/test_faults_serve.py.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from media.asr import AsrScheduler, FakeTranscriber, Transcriber
from media.events import Transcript
from media.fixtures import iter_frames, load_fixture
from media.frames import EncodedFrame
from media.opus import OpusEncoder
from media.recording import read_recording
from storage.errors import StorageUnavailableError
from storage.factory import Stores, memory_stores
from storage.keys import LocalKeyFile, track_key_context
from storage.memory import MemoryTranscriptStore
from tests.support import FIXTURES
from worker.calls.contracts import CallSummary
from worker.calls.engine import Engine, EngineConfig
from worker.calls.replay import replay_one
from worker.metrics import Metrics

LINE = "Tuesday works, thank you."
BOUND_S = 20.0  # no test here may take longer: a hang fails it instead of stalling the suite
# Small queues, filled by a full-speed replay against a slow model: the state in which finish() used to hang.
FULL_QUEUES: dict[str, Any] = {"speech_queue_frames": 10, "utterance_queue": 1, "flush_interval_s": 0.02}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.keys = LocalKeyFile(tmp / "keys" / "kek.json")
        self.schedulers: list[AsrScheduler] = []

    def engine(self, transcriber: Transcriber, stores: Stores, **config: Any) -> Engine:
        sched = AsrScheduler(transcriber, workers=2)
        self.schedulers.append(sched)
        return Engine(
            transcripts=stores.transcripts,
            recordings=stores.recordings,
            keys=self.keys,
            asr=sched,
            metrics=Metrics(),
            config=EngineConfig(**{**FULL_QUEUES, **config}),
        )

    async def recording(self, stores: Stores, call_id: str, track: int = 0) -> Any:
        info = await stores.transcripts.get_track(call_id, track)
        raw = await stores.recordings.read_track(call_id, track)
        return read_recording(
            raw, lambda h: self.keys.unwrap(info.wrapped_key, track_key_context(call_id, track))
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path)
    yield e
    for s in e.schedulers:
        await asyncio.wait_for(s.aclose(), 10)


async def _replay(engine: Engine, fixture: str = "example_call.flac", **kw: Any) -> CallSummary:
    emit = kw.pop("emit", lambda e: None)
    return await asyncio.wait_for(
        replay_one(engine, load_fixture(FIXTURES / fixture), realtime=False, emit=emit, **kw), BOUND_S
    )


async def _assert_every_frame_kept(env: Env, stores: Stores, summary: CallSummary) -> None:
    for track in range(summary.tracks):
        rec = await env.recording(stores, summary.call_id, track)
        assert rec.complete, "recording not closed"
        assert [ts for ts, _ in rec.frames] == [i * 960 for i in range(len(rec.frames))]
    assert summary.frames_sealed == summary.frames_received and summary.frames_lost == 0, summary


class LockedCounts(MemoryTranscriptStore):
    """`update_track_counts` raises as SQLite does while another process holds the write lock."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def update_track_counts(self, call_id: str, track: int, **counts: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailableError("sqlite converse.db: database is locked")
        await super().update_track_counts(call_id, track, **counts)


async def test_flush_stage_store_error_call_goes_on(env: Env) -> None:
    """The flush task's track-count update raises (database locked) while the queues are full: the call
    goes on and ends normally with everything stored; the failures are counted. (It used to end the call's
    TaskGroup, and finish() then blocked for good putting its end marker into the full frame queue.)"""
    store = LockedCounts(failures=3)
    stores = Stores(store, memory_stores().recordings)
    engine = env.engine(FakeTranscriber([LINE], delay=0.05), stores)
    summary = await _replay(engine)
    assert store.failures == 0, "the flush task never ran into the lock"
    assert summary.status == "ended" and summary.utterances >= 1, summary
    assert engine.metrics.store_errors.labels("track_counts")._value.get() == 3
    await _assert_every_frame_kept(env, stores, summary)
    info = await store.get_track(summary.call_id, 0)  # the counts written at the end are whole
    assert info.frames_received == info.frames_sealed == summary.frames_received
    assert (await store.get_call(summary.call_id)).status == "ended"


async def test_final_stage_observer_raising_call_goes_on(env: Env) -> None:
    """The final's observer raises (a replay whose stdout closed: BrokenPipeError) while the queues are
    full: the finals are stored anyway, the call ends normally, and it is logged once."""
    stores = memory_stores()
    engine = env.engine(FakeTranscriber([LINE], delay=0.05), stores)
    seen = 0

    def emit(event: dict[str, Any]) -> None:
        nonlocal seen
        if event["event"] == "final":
            seen += 1
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    summary = await _replay(engine, "call_phi", emit=emit)
    assert seen >= 2 and summary.status == "ended", summary
    stored = await stores.transcripts.get_utterances(summary.call_id)
    assert len(stored) == summary.utterances == seen
    await _assert_every_frame_kept(env, stores, summary)


async def test_speech_stage_crash_fails_that_call_only(env: Env) -> None:
    """Decode/VAD raises in one call mid-way while its queues are full: that call ends `failed` with a
    one-line reason within the bound, every frame it received is sealed and its recording closed; a call
    running beside it on the same engine ends normally."""
    stores = memory_stores()
    engine = env.engine(FakeTranscriber([LINE], delay=0.02), stores)
    process = engine.speech.process
    doomed: list[object] = []
    batches = 0

    async def crashing(speech: Any, batch: list[EncodedFrame], ended: bool, partials: bool) -> Any:
        nonlocal batches
        if not doomed:
            doomed.append(speech)  # the first track to reach the speech stage
        if speech is doomed[0]:
            batches += 1
            if batches == 5:
                raise RuntimeError("decoder exploded")
        return await process(speech, batch, ended, partials)

    engine.speech.process = crashing  # type: ignore[method-assign]
    bad, good = await asyncio.gather(_replay(engine), _replay(engine, "call_phi"), return_exceptions=True)
    assert isinstance(bad, RuntimeError) and str(bad).endswith("pipeline stopped"), bad
    assert isinstance(good, CallSummary) and good.status == "ended" and good.utterances >= 2, good
    await _assert_every_frame_kept(env, stores, good)
    assert engine.active_calls() == []
    failed = [c for c in await stores.transcripts.list_calls() if c.status == "failed"]
    assert len(failed) == 1 and failed[0].end_reason == "internal error in pipeline (RuntimeError)"
    call_id = failed[0].call_id
    rec = await env.recording(stores, call_id)
    info = await stores.transcripts.get_track(call_id, 0)
    assert rec.complete and len(rec.frames) == info.frames_sealed == info.frames_received > 5


class Hanging:
    """A model whose every call blocks until released (threads cannot be killed)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        self.calls += 1
        self.release.wait(60)
        return Transcript(text=LINE, no_speech_prob=0.0)


async def test_asr_stage_hang_finish_has_a_deadline(env: Env) -> None:
    """The model hangs on every utterance while the queues are full (ASR timeout far away): finish() gives
    up after `finish_timeout_s`, the call ends `failed` saying so, and every frame is sealed and closed.
    (finish() used to wait for the finals without a bound.)"""
    model = Hanging()
    stores = memory_stores()
    engine = env.engine(model, stores, asr_timeout_s=600.0, finish_timeout_s=1.0)
    t0 = time.monotonic()
    try:
        summary = await _replay(engine)
    finally:
        model.release.set()
    assert time.monotonic() - t0 < 10
    assert model.calls >= 1
    assert summary.status == "failed" and summary.reason == "transcription not finished within 1 s", summary
    await _assert_every_frame_kept(env, stores, summary)
    assert (await stores.transcripts.get_call(summary.call_id)).status == "failed"


async def test_asr_stage_raising_with_full_queues_call_goes_on(env: Env) -> None:
    """The model raises on every utterance while the queues are full: each utterance is counted failed,
    the call ends normally with all audio."""

    def boom(pcm: bytes, partial: bool) -> str:
        raise RuntimeError("model crashed")

    stores = memory_stores()
    engine = env.engine(FakeTranscriber(boom, delay=0.02), stores)
    summary = await _replay(engine, "call_phi")
    assert summary.status == "ended" and summary.utterances == 0 and summary.failed_utterances >= 2
    await _assert_every_frame_kept(env, stores, summary)


class FullDiskEnds(MemoryTranscriptStore):
    """`end_call` fails (the database's disk is full) until `full` is cleared."""

    full = True

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        if self.full:
            raise StorageUnavailableError("sqlite converse.db: database or disk is full")
        await super().end_call(call_id, ended_at, status, reason)


async def test_end_not_stored_is_retried_not_left_active(env: Env) -> None:
    """Storing the end fails (full disk): the call still leaves the engine, and the end is kept and stored
    by `retry_unended` once the store takes writes again, with its original time, status and reason."""
    store = FullDiskEnds()
    stores = Stores(store, memory_stores().recordings)
    engine = env.engine(FakeTranscriber([LINE]), stores)
    summary = await _replay(engine)
    assert engine.active_calls() == [] and engine.unended == 1
    assert (await store.get_call(summary.call_id)).status == "active"
    assert await engine.retry_unended() == 1  # still full: kept for the next try
    store.full = False
    assert await engine.retry_unended() == 0
    call = await store.get_call(summary.call_id)
    assert (call.status, call.end_reason) == ("ended", "fixture complete") and call.ended_at


async def test_cancelled_finish_still_closes_every_recording(env: Env) -> None:
    """finish() cancelled while it waits for the finals (a drain giving up): the recordings are still
    closed, the call leaves the engine, and a second finish returns the same summary."""
    model = Hanging()
    stores = memory_stores()
    engine = env.engine(model, stores, asr_timeout_s=600.0)
    call = await engine.start_call(source="replay", call_id="cancel-me")
    track = await call.open_track()
    encoder = OpusEncoder()
    frames = list(iter_frames(load_fixture(FIXTURES / "example_call.flac").tracks[0].pcm))
    for i, pcm in enumerate(frames):
        await track.push(EncodedFrame(payload=encoder.encode(pcm), timestamp=i * 960))
    try:
        task = asyncio.ensure_future(call.finish("ended"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        summary = await asyncio.wait_for(call.finish("ended"), 5)
    finally:
        model.release.set()
    assert engine.active_calls() == []
    rec = await env.recording(stores, "cancel-me")
    assert model.calls >= 1, "no final was being made when finish was cancelled"
    assert rec.complete and len(rec.frames) == len(frames) == summary.frames_sealed


async def test_drain_deadline_cuts_finish(env: Env) -> None:
    """With a drain deadline set (`Engine.set_deadline`), finish() waits for hung finals only until the
    deadline minus the closing reserve, however long `finish_timeout_s` is: the call ends `failed` with
    its recording closed, before the deadline."""
    model = Hanging()
    stores = memory_stores()
    engine = env.engine(model, stores, asr_timeout_s=600.0, finish_timeout_s=600.0)
    engine.set_deadline(time.monotonic() + 5.0)
    t0 = time.monotonic()
    try:
        summary = await _replay(engine)
    finally:
        model.release.set()
    assert time.monotonic() - t0 < 5.0
    assert summary.status == "failed" and str(summary.reason).startswith("transcription not finished")
    await _assert_every_frame_kept(env, stores, summary)

"""The call engine: wires edges (replay, WebRTC) to per-track pipelines; logic lives in media/ and redact/.

Per call: one TaskGroup (owned by a supervisor task the engine tracks). Per track, three tasks:
  - the speech task: Opus decode -> 16 kHz resample -> VAD, in batches off the event loop;
  - the final task: ASR (shared scheduler) -> redact (fail closed) -> store, in order;
  - the flush task: makes sealed audio durable every `flush_interval_s` (a SIGKILL loses at most that).
Sealing happens inline in `push` (AES-GCM on ~100 bytes costs microseconds) so a frame is sealed before
`push` returns; queues are bounded and apply backpressure, so nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import structlog

from media.asr import INAUDIBLE, SILENCE_LIKE
from media.events import PartialAudio, SpeechStarted, Transcript, Utterance
from media.frames import FRAME_SAMPLES, SAMPLE_RATE, EncodedFrame
from redact.hold import HOLD_S, Batch, Piece, TrackHold, redact_batch
from redact.ids import safe_hex_id
from storage.errors import StorageUnavailableError
from storage.protocols import (
    CallInfo,
    KeyProvider,
    OrgSettings,
    RecordingStore,
    TranscriptStore,
    UtteranceRecord,
)
from worker.calls.contracts import CallSummary, FinalResult, LiveEvent
from worker.calls.speech_pool import SpeechPool
from worker.calls.track import TrackSealer, TrackSpeech
from worker.metrics import Metrics

log = structlog.get_logger("worker.calls.engine")

_END = object()
_MAX_BATCH = 50  # frames (1 s) per thread hop at most
STORE_RETRY_S = 15.0  # how long a final retries a store that is unavailable before it counts as failed
CONTEXT_S = 20.0  # how long a turn stays the context of the next one for redaction
CONTEXT_WAIT_S = 10.0  # how long a final may wait for another track's earlier turn (only when it lags)
CLOSE_RESERVE_S = 3.0  # of a drain deadline, kept for closing the recordings after the finalisation wait
CLOSE_MIN_S = 1.0  # closing always gets this long (past a deadline too): the last second of audio is in it


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    org_id: str = "default"
    pod_id: str | None = None  # stored on each call: a restarting pod marks its own stale calls failed
    flush_interval_s: float = 1.0
    speech_queue_frames: int = 500  # 10 s of audio waiting for decode/VAD, then backpressure
    utterance_queue: int = 8  # utterances waiting for ASR per track, then backpressure
    # Gather frames this long so decode/VAD cross to a thread in batches, all tracks in one hop per tick: per
    # frame the hop cost more than the work (e2e_capacity, media only: 3.5% of a core per call at 0.02 s,
    # 2.7% at 0.1 s). Adds at most this to time to final (latency.py, one call: p50 0.49 s at 0.1 s).
    batch_window_s: float = 0.1
    asr_timeout_s: float = 60.0  # an ASR call that hangs longer fails that utterance, not the call
    # finish(): finals still being made get this long, then closing the recordings and storing the end get
    # `close_timeout_s` (both cut to what is left of a drain deadline, `Engine.set_deadline`).
    finish_timeout_s: float = 90.0
    close_timeout_s: float = 30.0
    partials: bool = False  # interim transcripts for the live view (only computed while someone watches)
    record_audio: bool = True
    live_queue: int = 256
    # A final that may end inside an entity waits this long for the next one on its track, to be redacted
    # joined to it (redact.hold); 0 turns the hold off (a continuation is still redacted with what it ends).
    hold_s: float = HOLD_S


RedactResult = tuple[str, dict[str, int]]
_T = TypeVar("_T")


class RedactFn:
    """Adapter so the engine depends on a callable, not on redact's internals.

    Called as `fn(text, variables)` or, when it accepts one, with `context=` the previous turn of the call.
    """

    __slots__ = ("_fn", "_takes_context")

    def __init__(self, fn: Callable[..., RedactResult], *, takes_context: bool = False) -> None:
        self._fn = fn
        self._takes_context = takes_context

    def __call__(
        self, text: str, variables: Mapping[str, str] | None, context: str | None = None
    ) -> RedactResult:
        if self._takes_context:
            return self._fn(text, variables, context=context)
        return self._fn(text, variables)


def default_redactor() -> RedactFn:
    import redact

    def _run(text: str, variables: Mapping[str, str] | None, *, context: str | None = None) -> RedactResult:
        result = redact.redact_in_dialogue(text, variables, context=context)
        return result.text, dict(result.counts)

    return RedactFn(_run, takes_context=True)


@dataclass(slots=True)
class _TrackState:
    index: int
    sealer: TrackSealer | None
    speech: TrackSpeech
    frames: asyncio.Queue[EncodedFrame | object]
    utterances: asyncio.Queue[Utterance | PartialAudio | object]
    received: int = 0
    lost: int = 0
    last_ts: int = -FRAME_SAMPLES
    arrivals: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=3000))
    seq: int = 0
    committed: int = 0
    last_committed_at: str = ""  # committed_at never goes backwards on a track (wall-clock jumps)
    failed: int = 0
    closed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    heard_until: float = 0.0  # seconds of track audio the segmenter has seen (inf once the track ended)
    segmenting: bool = False  # a batch is in the decode/VAD thread


class Track:
    """The `TrackPipeline` the edges push frames into."""

    __slots__ = ("_call", "_st", "index")

    def __init__(self, call: Call, st: _TrackState) -> None:
        self._call = call
        self._st = st
        self.index = st.index

    async def push(self, frame: EncodedFrame) -> None:
        st = self._st
        call = self._call
        if st.closed:
            raise RuntimeError(f"track {st.index} of call {call.call_id} is closed")
        st.received += 1
        call.engine.metrics.frames_received.inc()
        if call.storage_failure is not None:
            # Audio can no longer be stored: count the frame lost and make the edge end the call.
            self.count_lost(1)
            raise RuntimeError(f"call {call.call_id}: {call.storage_failure}")
        if frame.timestamp <= st.last_ts:
            # Out-of-order or duplicate: the recording is strictly ordered, so it counts as lost.
            # (Gaps are counted by the edge, which knows each packet's duration.)
            self.count_lost(1)
            return
        st.last_ts = frame.timestamp
        if st.sealer is not None:
            try:
                await st.sealer.seal(frame.timestamp, frame.payload)
            except Exception as exc:  # e.g. ENOSPC: fail the call with a one-line reason (fault tests)
                call.fail_storage(exc)
                self.count_lost(1)
                raise RuntimeError(f"call {call.call_id}: {call.storage_failure}") from None
            call.engine.metrics.frames_sealed.inc()
        st.arrivals.append(((frame.timestamp + FRAME_SAMPLES) / SAMPLE_RATE, time.monotonic()))
        try:
            st.frames.put_nowait(frame)
        except asyncio.QueueFull:
            await self._call.wait_for_room(st.frames, frame)

    def count_lost(self, frames: int) -> None:
        self._st.lost += frames
        self._call.engine.metrics.frames_lost.inc(frames)


class Call:
    """One call: its TaskGroup, its tracks and its live subscribers."""

    def __init__(
        self,
        engine: Engine,
        info: CallInfo,
        variables: Mapping[str, str] | None,
        on_final: Callable[[FinalResult], None] | None,
    ) -> None:
        self.engine = engine
        self.info = info
        self.call_id = info.call_id
        self.variables = dict(variables or {})
        self.on_final = None if on_final is None else _guarded(on_final)
        self.record_audio = True  # the org's "call recording" setting, fixed when the call starts
        self.settings: OrgSettings | None = None
        self.started_mono = time.monotonic()
        self._tracks: list[_TrackState] = []
        self._tg: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._open_lock = asyncio.Lock()
        self._finish_lock = asyncio.Lock()
        self._subscribers: set[asyncio.Queue[LiveEvent | None]] = set()
        self._summary: CallSummary | None = None
        self._closing: asyncio.Future[CallSummary] | None = None
        # Recent turns (audio start, end, unredacted text: memory only, never stored or logged) and turns
        # still being transcribed, so an answer is redacted knowing the question before it.
        self._turns: deque[tuple[float, float, str]] = deque(maxlen=16)
        self._pending: dict[tuple[int, float], float] = {}
        self._turns_changed = asyncio.Condition()
        self._context_waiters = 0  # finals waiting in _context_for (segmenters notify only then)
        # The first recording-storage failure (one line, no paths): the call then ends "failed" with it.
        self.storage_failure: str | None = None
        self._supervisor = asyncio.create_task(self._supervise(), name=f"call-{self.call_id}")

    def add_sframe_keys(self, suite: int, keys: Mapping[int, bytes]) -> None:
        """Mid-call SFrame keys (admin API): handed to the E2EE state the WebRTC edge attached
        (worker.webrtc.e2ee). ValueError when the call is not end-to-end encrypted or the keys are refused."""
        state = getattr(self, "e2ee", None)
        if state is None:
            raise ValueError(f"call {self.call_id} is not end-to-end encrypted")
        state.add_sframe_keys(suite, keys)

    def fail_storage(self, exc: BaseException) -> None:
        """Record that sealed audio could not be stored; every later `push` raises (fault tests: ENOSPC)."""
        if self.storage_failure is None:
            code = getattr(exc, "errno", None)
            name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
            detail = f"{name}: {os.strerror(code)}" if name and isinstance(code, int) else type(exc).__name__
            self.storage_failure = f"recording storage failed ({detail})"
            log.error("recording_store_failed", error=type(exc).__name__, errno=name or None)

    async def wait_for_room(self, queue: asyncio.Queue[EncodedFrame | object], item: EncodedFrame) -> None:
        """Backpressure that cannot hang: if the call's pipeline died, the edge gets an error instead."""
        put = asyncio.ensure_future(queue.put(item))
        try:
            await asyncio.wait({put, self._supervisor}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        if not put.done() or put.cancelled():
            raise RuntimeError(f"call {self.call_id}: pipeline stopped")

    async def _supervise(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._ready.set()
            await self._stop.wait()
        self._tg = None

    # -- tracks -------------------------------------------------------------------------------------------

    async def open_track(self, codec: str = "opus") -> Track:
        """The next track; `codec` is its frames' codec ("opus", or "pcmu" from media streams)."""
        async with self._open_lock:
            await self._ready.wait()
            if self._stop.is_set() or self._tg is None:
                raise RuntimeError(f"call {self.call_id} is finished")
            index = len(self._tracks)
            eng = self.engine
            sealer = None
            if self.record_audio:
                sealer = await TrackSealer.create(
                    call_id=self.call_id,
                    track=index,
                    keys=eng.keys,
                    transcripts=eng.transcripts,
                    recordings=eng.recordings,
                    codec=codec,
                )
            cfg = eng.config
            st = _TrackState(
                index=index,
                sealer=sealer,
                speech=TrackSpeech(partials=cfg.partials, codec=codec),
                frames=asyncio.Queue(maxsize=cfg.speech_queue_frames),
                utterances=asyncio.Queue(maxsize=cfg.utterance_queue),
            )
            self._tracks.append(st)
            st.tasks.append(self._tg.create_task(self._speech_task(st), name=f"speech-{index}"))
            st.tasks.append(self._tg.create_task(self._final_task(st), name=f"final-{index}"))
            if sealer is not None:
                st.tasks.append(self._tg.create_task(self._flush_task(st, sealer), name=f"flush-{index}"))
            return Track(self, st)

    async def _speech_task(self, st: _TrackState) -> None:
        structlog.contextvars.bind_contextvars(track=st.index)
        window = self.engine.config.batch_window_s
        ended = False
        while not ended:
            # The end of the track is `st.closed` (set by finish) once the queue is empty; `_END` in the
            # queue only wakes a get() blocked on an empty queue, so finish never waits on a full one.
            batch: list[EncodedFrame] = []
            if not (st.closed and st.frames.empty()):
                item = await st.frames.get()
                if item is not _END:
                    assert isinstance(item, EncodedFrame)
                    batch.append(item)
                    # Let the window's frames arrive, then take them all: the pool's shared tick wakes every
                    # track at once and their batches cross to the thread in one hop (a wait_for per frame
                    # costs a task each, and a hop costs more than a track's work).
                    if window > 0 and st.frames.empty():  # real time (a full-speed replay never waits)
                        await self.engine.speech.tick()
                while len(batch) < _MAX_BATCH and not st.frames.empty():
                    nxt = st.frames.get_nowait()
                    if nxt is not _END:
                        assert isinstance(nxt, EncodedFrame)
                        batch.append(nxt)
            ended = st.closed and st.frames.empty()
            if not batch and not ended:
                continue
            want_partials = self.engine.config.partials and bool(self._subscribers)
            st.segmenting = True
            try:
                events = await self.engine.speech.process(st.speech, batch, ended, want_partials)
            finally:
                st.segmenting = False
            if batch:
                st.heard_until = st.speech.heard_s  # packets last 2.5-120 ms: where its audio ends
            if ended:
                st.heard_until = math.inf
            if self._context_waiters:
                async with self._turns_changed:
                    self._turns_changed.notify_all()
            for ev in events:
                if isinstance(ev, SpeechStarted):
                    continue
                if isinstance(ev, PartialAudio):
                    if st.utterances.full():
                        self.engine.metrics.shed_partials.inc()
                        continue
                    st.utterances.put_nowait(ev)
                else:
                    if isinstance(ev, Utterance):
                        self._pending[(st.index, ev.start)] = ev.end
                    await st.utterances.put(ev)
        await st.utterances.put(_END)

    async def _final_task(self, st: _TrackState) -> None:
        structlog.contextvars.bind_contextvars(track=st.index)
        eng = self.engine
        key = f"{self.call_id}/{st.index}"
        hold = TrackHold(eng.config.hold_s)
        while True:
            wait = None if hold.deadline is None else max(0.0, hold.deadline - time.monotonic())
            try:
                item = await asyncio.wait_for(st.utterances.get(), wait)
            except TimeoutError:  # the held final's bound passed: stored now, its open tail over-redacted
                for batch in hold.expire(time.monotonic()):
                    await self._store_batch(st, batch)
                continue
            if item is _END:
                # Never lost, never stored raw: what is held goes now, over-redacted (finish waits for it).
                for batch in hold.flush(time.monotonic()):
                    await self._store_batch(st, batch)
                return
            if isinstance(item, PartialAudio):
                # Skip stale partials: a newer partial or a final is already waiting behind this one.
                if not st.utterances.empty():
                    eng.metrics.shed_partials.inc()
                    continue
                fut = eng.asr.submit_partial(key, item.pcm)
                if fut is None:
                    eng.metrics.shed_partials.inc()
                    continue
                try:
                    tr = await self._held_wait(st, hold, fut)
                except Exception:  # noqa: S112 - a partial is best-effort (never logged: it holds speech)
                    continue
                if tr is None:  # shed by the scheduler (already counted there)
                    continue
                if tr.text:
                    self._publish(LiveEvent(self.call_id, st.index, "partial", tr.text, item.start, item.end))
                continue
            assert isinstance(item, Utterance)
            await self._commit(st, key, item, hold)

    async def _commit(self, st: _TrackState, key: str, utt: Utterance, hold: TrackHold) -> None:
        try:
            await self._commit_turn(st, key, utt, hold)
        finally:
            self._pending.pop((st.index, utt.start), None)
            async with self._turns_changed:
                self._turns_changed.notify_all()

    async def _context_for(self, track: int, utt: Utterance) -> str | None:
        """The previous turn by audio time (any track) as redaction context. Waits, at most CONTEXT_WAIT_S,
        while another track may still produce an earlier turn: one of its utterances that started earlier
        and ends before this one starts is being transcribed, or its segmenter has frames left and has not
        heard that far (a fast replay or a loaded worker runs the tracks out of step; "jane dot go at
        example" is only an address after "what's your email?"). An idle track is never waited for."""
        until = utt.start + 0.3

        def earlier_possible() -> bool:
            # Only utterances that start earlier: two finals never wait for each other.
            pending = self._pending.items()
            if any(t != track and start < utt.start and end <= until for (t, start), end in pending):
                return True
            return any(
                o.index != track and o.heard_until < until and (o.segmenting or not o.frames.empty())
                for o in self._tracks
            )

        if earlier_possible():
            self._context_waiters += 1
            try:
                async with self._turns_changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._turns_changed.wait_for(lambda: not earlier_possible()), CONTEXT_WAIT_S
                        )
            finally:
                self._context_waiters -= 1
        best: tuple[float, float, str] | None = None
        for turn in self._turns:
            if utt.start - CONTEXT_S <= turn[1] <= until and (best is None or turn[1] > best[1]):
                best = turn
        return best[2] if best is not None else None

    async def _commit_turn(self, st: _TrackState, key: str, utt: Utterance, hold: TrackHold) -> None:
        eng = self.engine
        eng.metrics.asr_queue_depth.inc()
        try:
            asr = asyncio.wait_for(eng.asr.submit_final(key, utt.pcm), eng.config.asr_timeout_s)
            tr = await self._held_wait(st, hold, asr)
        except Exception as exc:
            st.failed += 1
            eng.metrics.utterances_failed.labels("asr").inc()
            log.warning("asr_failed", error=type(exc).__name__, start=round(utt.start, 2))
            return
        finally:
            eng.metrics.asr_queue_depth.dec()
        raw = tr.text.strip()
        if tr.rejected is not None:
            eng.metrics.utterances_rejected.labels(tr.rejected).inc()
        if not raw:
            if tr.rejected is None or tr.rejected in SILENCE_LIKE:
                return  # nothing said, or Whisper's known inventions on silence (counted above)
            raw = INAUDIBLE  # speech the model could not read: kept with its times, never dropped unseen
        # The previous turn tells what an answer like "jan.go.example.com" is.
        context = await self._held_wait(st, hold, self._context_for(st.index, utt))
        self._turns.append((utt.start, utt.end, raw))
        self._publish(LiveEvent(self.call_id, st.index, "final", raw, utt.start, utt.end))  # held ones too

        def redact_one(text: str) -> RedactResult:
            return eng.redactor(text, self.variables, context)

        # A final that may end inside an entity is held (redact.hold); the batches due now are stored.
        for batch in hold.final(Piece(utt, raw, redact_one), time.monotonic()):
            await self._store_batch(st, batch)

    async def _held_wait(self, st: _TrackState, hold: TrackHold, aw: Awaitable[_T]) -> _T:
        """`await aw`, storing the track's held final if its bound passes meanwhile: the next utterance's
        ASR (or its wait for context) never stretches the hold."""
        if hold.deadline is None:
            return await aw
        task = asyncio.ensure_future(aw)
        try:
            while hold.deadline is not None and not task.done():
                await asyncio.wait({task}, timeout=max(0.0, hold.deadline - time.monotonic()))
                for batch in hold.expire(time.monotonic()):
                    await self._store_batch(st, batch)
            return await task
        finally:
            task.cancel()  # only if this wait itself was cancelled (a no-op once done)

    async def _store_batch(self, st: _TrackState, batch: Batch) -> None:
        eng = self.engine
        try:
            results = redact_batch(batch)
        except Exception as exc:
            # Fail closed: nothing is written for these utterances and the text is not logged.
            for p in batch.pieces:
                assert isinstance(p.key, Utterance)
                st.failed += 1
                eng.metrics.utterances_failed.labels("redaction").inc()
                log.error("redaction_failed", error=type(exc).__name__, start=round(p.key.start, 2))
            return
        for p, (text, counts) in zip(batch.pieces, results, strict=True):
            assert isinstance(p.key, Utterance)
            await self._store_final(st, p.key, text, counts, held=batch.held)

    async def _append_retrying(self, record: UtteranceRecord) -> None:
        """Append, retrying while the store is briefly unavailable (a locked SQLite, a PostgreSQL
        fail-over) for up to STORE_RETRY_S: a final is not lost to a few seconds of lock. Later finals of
        the track wait behind it (their queue applies backpressure); `finish`'s deadline bounds it all."""
        delay, deadline = 0.25, time.monotonic() + STORE_RETRY_S
        while True:
            try:
                await self.engine.transcripts.append_utterance(record)
                return
            except StorageUnavailableError:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("transcript_store_retry", seq=record.seq, delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)

    async def _store_final(
        self, st: _TrackState, utt: Utterance, text: str, counts: dict[str, int], *, held: bool
    ) -> None:
        eng = self.engine
        # Wall-clock time, so it can jump (NTP step, VM resume); clamp so it never goes backwards on a track.
        committed_at = max(utc_now(), st.last_committed_at)
        record = UtteranceRecord(
            call_id=self.call_id,
            track=st.index,
            seq=st.seq,
            start=round(utt.start, 3),
            end=round(utt.end, 3),
            text=text,
            committed_at=committed_at,
            redactions=counts,
        )
        try:
            await self._append_retrying(record)
        except Exception as exc:
            st.failed += 1
            eng.metrics.utterances_failed.labels("storage").inc()
            log.error("transcript_store_failed", error=type(exc).__name__, seq=st.seq)
            return
        mono = time.monotonic()
        st.last_committed_at = committed_at
        st.seq += 1
        st.committed += 1
        eng.metrics.utterances.inc()
        for name, n in counts.items():
            eng.metrics.redactions.labels(name).inc(n)
        arrival = _arrival_of(st.arrivals, utt.speech_end)
        ttf = None if arrival is None else max(0.0, mono - arrival)
        if ttf is not None:
            eng.metrics.time_to_final.observe(ttf)
        if self.on_final is not None:
            self.on_final(
                FinalResult(
                    call_id=self.call_id,
                    track=st.index,
                    start=record.start,
                    end=record.end,
                    speech_end=round(utt.speech_end, 3),
                    text=text,
                    committed_at=committed_at,
                    committed_monotonic=mono,
                    time_to_final=None if ttf is None else round(ttf, 4),
                    held=held,
                )
            )

    async def _flush_task(self, st: _TrackState, sealer: TrackSealer) -> None:
        interval = self.engine.config.flush_interval_s
        while not st.closed and self.storage_failure is None:
            await asyncio.sleep(interval)
            try:
                await sealer.flush()
            except Exception as exc:  # the store is failing: the call ends (next push raises), not the task
                self.fail_storage(exc)
                return
            try:
                await self.engine.transcripts.update_track_counts(
                    self.call_id,
                    st.index,
                    received=st.received,
                    sealed=sealer.sealed,
                    lost=st.lost,
                    duration_s=max(0.0, (st.last_ts + FRAME_SAMPLES) / SAMPLE_RATE),
                )
            except Exception as exc:  # progress only (a locked database): the next tick or the end rewrites
                self.engine.metrics.store_errors.labels("track_counts").inc()
                log.warning("track_counts_store_failed", error=type(exc).__name__, track=st.index)

    # -- live view ----------------------------------------------------------------------------------------

    def _publish(self, ev: LiveEvent | None) -> None:
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()  # the oldest event goes; a slow viewer must not hold memory
            q.put_nowait(ev)

    async def live(self) -> AsyncIterator[LiveEvent]:
        q: asyncio.Queue[LiveEvent | None] = asyncio.Queue(maxsize=self.engine.config.live_queue)
        self._subscribers.add(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._subscribers.discard(q)

    # -- end ----------------------------------------------------------------------------------------------

    async def finish(self, status: str = "ended", reason: str | None = None) -> CallSummary:
        """End the call within `Engine.finish_timeout()`: speech in progress is finalised and committed if
        the stages manage it by then; whatever happens, every track's recording is closed (what was sealed
        stays), the call leaves the engine and its end is stored (or retried by the engine)."""
        if self._summary is not None:
            return self._summary
        async with self._finish_lock:
            if self._summary is not None:
                return self._summary
            if self._closing is not None:  # an earlier finish was cancelled while closing
                self._summary = await asyncio.shield(self._closing)
                return self._summary
            timeout = self.engine.finish_timeout()
            try:
                async with self._open_lock:
                    for st in self._tracks:
                        st.closed = True
                        with contextlib.suppress(asyncio.QueueFull):  # full: the speech task is not waiting
                            st.frames.put_nowait(_END)
                # Speech in progress is finalised (VAD flush) and every final committed before the end.
                work = [t for st in self._tracks for t in st.tasks[:2]]
                late: set[asyncio.Task[None]] = set()
                if work:
                    _, late = await asyncio.wait(work, timeout=timeout)
                for st in self._tracks:
                    for t in st.tasks:
                        t.cancel()
                self._stop.set()
                try:
                    async with asyncio.timeout(max(1.0, timeout / 10)):
                        await self._supervisor
                except TimeoutError:  # a stage ignoring cancellation: its call still ends below
                    log.error("call_pipeline_stuck")
                    status, reason = "failed", "pipeline did not stop"
                except Exception as group:  # a crashed stage fails the call; what was sealed is still closed
                    name = type(_first_cause(group)).__name__
                    status, reason = "failed", f"internal error in pipeline ({name})"
                    log.error("call_pipeline_failed", error=name)
                if late and status != "failed":
                    # The recording is whole; speech not transcribed by the deadline is not.
                    status, reason = "failed", f"transcription not finished within {timeout:g} s"
                    log.error("call_finalisation_timeout", timeout_s=timeout, stages=len(late))
            finally:
                # Also when finish itself is cancelled: the stages stop, the recordings close, the call ends.
                for st in self._tracks:
                    for t in st.tasks:
                        t.cancel()
                self._stop.set()
                if self._closing is None:
                    self._closing = asyncio.ensure_future(self._close_tracks(status, reason))
                self._summary = await asyncio.shield(self._closing)
            return self._summary

    async def _close_tracks(self, status: str, reason: str | None) -> CallSummary:
        """Close every recording, store the counts and the end, all within `Engine.close_timeout()`; the
        call leaves the engine whatever the store does (an end not stored is retried by the engine)."""
        eng = self.engine
        end_by = time.monotonic() + eng.close_timeout()
        received = sealed = lost = utts = failed = 0
        duration = 0.0
        try:
            # Every recording first: a slow database must not take the time the last audio needs.
            for st in self._tracks:
                if st.sealer is not None:
                    try:
                        async with asyncio.timeout_at(_loop_time(end_by)):
                            await st.sealer.close()
                    except Exception as exc:  # disk full or too slow at the end: what reached the disk stays
                        self.fail_storage(exc)
            for st in self._tracks:
                dur = max(0.0, (st.last_ts + FRAME_SAMPLES) / SAMPLE_RATE)
                duration = max(duration, dur)
                n_sealed = 0
                if st.sealer is not None:
                    n_sealed = st.sealer.sealed
                    if self.storage_failure is not None:
                        # Only frames known durable count as sealed; the rest are lost (invariant 3).
                        n_sealed = st.sealer.durable
                        st.lost += st.sealer.sealed - n_sealed
                        eng.metrics.frames_lost.inc(st.sealer.sealed - n_sealed)
                try:
                    async with asyncio.timeout_at(_loop_time(end_by)):
                        await eng.transcripts.update_track_counts(
                            self.call_id,
                            st.index,
                            received=st.received,
                            sealed=n_sealed,
                            lost=st.lost,
                            duration_s=dur,
                        )
                except Exception as exc:  # the call must still end (and leave the engine) when the DB fails
                    eng.metrics.store_errors.labels("track_counts").inc()
                    log.error("track_counts_store_failed", error=type(exc).__name__, track=st.index)
                received += st.received
                sealed += n_sealed
                lost += st.lost
                utts += st.committed
                failed += st.failed
            if self.storage_failure is not None:
                status, reason = "failed", self.storage_failure
            ended_at = utc_now()
            try:
                async with asyncio.timeout_at(_loop_time(end_by)):
                    await eng.transcripts.end_call(self.call_id, ended_at, status, reason)
            except Exception as exc:  # e.g. a full disk: retried by the engine, not left active for good
                eng.metrics.store_errors.labels("end_call").inc()
                log.error("end_call_store_failed", error=type(exc).__name__)
                eng._unended[self.call_id] = (ended_at, status, reason)
        finally:
            self._publish(None)
            eng._forget(self)
        eng.metrics.calls_total.labels(status).inc()
        log.info("call_ended", status=status, reason=reason, tracks=len(self._tracks), utterances=utts)
        return CallSummary(
            call_id=self.call_id,
            status=status,
            reason=reason,
            tracks=len(self._tracks),
            frames_received=received,
            frames_sealed=sealed,
            frames_lost=lost,
            utterances=utts,
            failed_utterances=failed,
            duration_s=round(duration, 3),
        )


def _loop_time(monotonic_at: float) -> float:
    """A `time.monotonic()` instant on the running loop's clock (for asyncio.timeout_at)."""
    return asyncio.get_running_loop().time() + (monotonic_at - time.monotonic())


def _first_cause(exc: BaseException) -> BaseException:
    """The first exception inside a TaskGroup's (nested) ExceptionGroup: the stage that failed."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _guarded(observer: Callable[[FinalResult], None]) -> Callable[[FinalResult], None]:
    """An observer that raises (a replay whose stdout closed) loses its own output, never the call: the
    final is already stored. Logged once per call, by exception type only."""
    failed = False

    def notify(result: FinalResult) -> None:
        nonlocal failed
        try:
            observer(result)
        except Exception as exc:
            if not failed:
                log.error("final_observer_failed", error=type(exc).__name__)
            failed = True

    return notify


def _arrival_of(arrivals: deque[tuple[float, float]], audio_t: float) -> float | None:
    """Monotonic arrival time of the frame that holds audio time `audio_t` (for time-to-final)."""
    if not arrivals:
        return None
    keys = [a for a, _ in arrivals]
    i = bisect.bisect_left(keys, audio_t)
    if i >= len(arrivals):
        i = len(arrivals) - 1
    return arrivals[i][1]


class AsrLike(Protocol):
    async def submit_final(self, call_key: str, pcm: bytes) -> Transcript: ...
    def submit_partial(self, call_key: str, pcm: bytes) -> asyncio.Future[Transcript | None] | None: ...


class Engine:
    """Starts calls. Shared by every call of the process: stores, keys, the ASR scheduler, metrics."""

    def __init__(
        self,
        *,
        transcripts: TranscriptStore,
        recordings: RecordingStore,
        keys: KeyProvider,
        asr: AsrLike,
        metrics: Metrics | None = None,
        redactor: RedactFn | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.transcripts = transcripts
        self.recordings = recordings
        self.keys = keys
        self.asr = asr
        self.metrics = metrics or Metrics()
        self.redactor = redactor or default_redactor()
        self.config = config or EngineConfig()
        self.speech = SpeechPool(self.config.batch_window_s)
        self._calls: dict[str, Call] = {}
        self.on_call_ended: list[Callable[[str], None]] = []  # e.g. forget the call's escalation
        self._deadline: float | None = None  # monotonic: every finish is over by then (drain)
        # Calls whose end could not be stored (call_id -> ended_at, status, reason): `retry_unended` retries.
        self._unended: dict[str, tuple[str, str, str | None]] = {}

    def set_deadline(self, monotonic_at: float | None) -> None:
        """Bound every call's finish (finalisation, closing, storing the end) to end by `monotonic_at`."""
        self._deadline = monotonic_at

    def finish_timeout(self) -> float:
        """How long finish() may wait for finals: the configured bound, cut so closing still fits."""
        cfg = self.config
        if self._deadline is None:
            return cfg.finish_timeout_s
        left = self._deadline - time.monotonic() - min(cfg.close_timeout_s, CLOSE_RESERVE_S)
        return max(0.0, min(cfg.finish_timeout_s, left))

    def close_timeout(self) -> float:
        """How long closing a call's recordings and storing its end may take (at least CLOSE_MIN_S)."""
        cfg = self.config
        if self._deadline is None:
            return cfg.close_timeout_s
        return max(CLOSE_MIN_S, min(cfg.close_timeout_s, self._deadline - time.monotonic()))

    @property
    def unended(self) -> int:
        return len(self._unended)

    async def retry_unended(self) -> int:
        """Store the ends that failed (full disk, locked database); returns how many are still missing."""
        for call_id, (ended_at, status, reason) in list(self._unended.items()):
            try:
                await self.transcripts.end_call(call_id, ended_at, status, reason)
            except Exception as exc:
                log.warning("end_call_retry_failed", call_id=call_id, error=type(exc).__name__)
                break  # the store is still failing: the next tick tries again
            del self._unended[call_id]
            log.info("end_call_stored", call_id=call_id, status=status)
        return len(self._unended)

    async def start_call(
        self,
        *,
        org_id: str | None = None,
        source: str,
        fixture: str | None = None,
        variables: Mapping[str, str] | None = None,
        call_id: str | None = None,
        on_final: Callable[[FinalResult], None] | None = None,
        external_id: str | None = None,
    ) -> Call:
        info = CallInfo(
            call_id=call_id or safe_hex_id(),
            org_id=org_id or self.config.org_id,
            source=source,
            started_at=utc_now(),
            fixture=fixture,
            external_id=external_id,
            pod_id=self.config.pod_id,
        )
        settings = await self.transcripts.get_settings(info.org_id)
        await self.transcripts.create_call(info)
        call = Call(self, info, variables, on_final)
        call.settings = settings
        call.record_audio = self.config.record_audio and settings.recording_enabled
        self._calls[info.call_id] = call
        self.metrics.active_calls.inc()
        log.info("call_started", call_id=info.call_id, source=source)
        return call

    def get_call(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def active_calls(self) -> list[Call]:
        return list(self._calls.values())

    def _forget(self, call: Call) -> None:
        if self._calls.pop(call.call_id, None) is not None:
            self.metrics.active_calls.dec()
        for hook in self.on_call_ended:
            hook(call.call_id)

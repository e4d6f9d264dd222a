"""The process-wide ASR scheduler: runs a `Transcriber` on a thread pool, finals first, partials shed.

Shared by every call of a process (one model, one pool); the only asyncio part of speech recognition.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from media.events import Transcript

P = ParamSpec("P")
T = TypeVar("T")


class AsrError(Exception):
    """A transcription failed. The message carries ids and sizes, never audio or text."""


class Transcriber(Protocol):
    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        """Transcribe 16 kHz mono s16le PCM; blocking, called from a worker thread."""
        ...


@dataclass(frozen=True, slots=True)
class AsrStats:
    queued_finals: int
    queued_partials: int
    in_flight: int
    shed_partials: int
    failed: int
    completed: int
    hung: int = 0  # running past `hang_after_s`


class DaemonPool(Executor):
    """A fixed pool of daemon threads. A model call stuck in native code cannot be interrupted, and
    ThreadPoolExecutor joins its threads at interpreter exit, so one hung call would hold the process up
    for good; these threads never do (their work is abandoned at exit, like a SIGKILL's)."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        fut: Future[T] = Future()
        self._queue.put((fut, lambda: fn(*args, **kwargs)))
        return fut

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, call = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()


@dataclass(slots=True, eq=False)
class _Job:
    call_key: str
    pcm: bytes
    partial: bool
    future: asyncio.Future[Transcript | None]
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    started: float = 0.0  # monotonic, when a worker took it


class AsrScheduler:
    """One per process, shared by all calls: runs a `Transcriber` on a dedicated thread pool.

    Policy:
    - Finals first: a free worker always takes the oldest queued final before any partial.
    - Partials may use at most `workers - 1` workers (all of them when there is one), so with two or more
      workers a final never waits for a partial to finish.
    - Partials are shed, never queued deep: per call only the newest is kept (an older one queued is
      replaced), none is accepted while finals are waiting, at most `max_partials` are queued in all
      (the oldest goes). A shed partial's future resolves to None and counts in `shed_partials`.
    - Finals are never dropped: each call may have `max_finals_per_call` finals queued or running;
      `submit_final` beyond that waits (backpressure on that call's pipeline), so queues stay bounded.
    - A model call cannot be interrupted: one running past `hang_after_s` counts as hung (`hung()`, the
      `converse_asr_hung_workers` metric, /readyz degraded once every worker is hung) and keeps its worker
      until it returns; the workers are daemon threads and `aclose(timeout_s)` is bounded, so a hung model
      never holds up shutdown.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        workers: int | None = None,
        max_finals_per_call: int = 4,
        max_partials: int | None = None,
        hang_after_s: float = 60.0,
    ) -> None:
        self._transcriber = transcriber
        self.workers = workers or os.cpu_count() or 1
        self._partial_slots = max(1, self.workers - 1)
        self._max_partials = max_partials if max_partials is not None else self.workers * 2
        self._max_finals = max_finals_per_call
        self.hang_after_s = hang_after_s
        self._executor = DaemonPool(self.workers, "asr")
        self._finals: collections.deque[_Job] = collections.deque()
        self._partials: dict[str, _Job] = {}  # insertion order = submission order
        self._finals_held: dict[str, int] = {}  # per call: finals queued or running (entry gone at 0)
        self._final_waiters: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._running: set[_Job] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._shed = self._failed = self._completed = 0

    @property
    def transcriber(self) -> Transcriber:
        return self._transcriber

    async def submit_final(self, call_key: str, pcm16k: bytes) -> Transcript:
        """Transcribe a finished utterance. Waits for a slot when this call already has its maximum of
        finals queued or running. Raises AsrError if the transcriber fails."""
        if self._closed:
            raise AsrError(f"scheduler closed (call {call_key})")
        await self._acquire(call_key)
        if self._closed:  # closed while this call waited for a slot
            self._release(call_key)
            raise AsrError(f"scheduler closed (call {call_key})")
        job = _Job(call_key, pcm16k, False, asyncio.get_running_loop().create_future())
        stale = self._partials.pop(call_key, None)  # the utterance it previewed has just ended
        if stale is not None:
            self._shed_job(stale)
        self._finals.append(job)
        self._pump()
        try:
            result = await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if job in self._finals:  # not started: take it back; a running one finishes and is discarded
                self._finals.remove(job)
                job.future.cancel()
                self._release(call_key)
                self._pump()  # may make the scheduler idle (aclose waits for that)
            else:  # nobody awaits it any more: retrieve its outcome so asyncio does not log it
                job.future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
            raise
        assert result is not None
        return result

    def submit_partial(self, call_key: str, pcm16k: bytes) -> asyncio.Future[Transcript | None] | None:
        """Offer an interim transcript. Returns None when shed at once (load, or closed); the future
        resolves to None if the partial is shed later (replaced by a newer one, or pushed out)."""
        if self._closed or self._finals:
            self._shed += 1
            return None
        job = _Job(call_key, pcm16k, True, asyncio.get_running_loop().create_future())
        older = self._partials.pop(call_key, None)
        if older is not None:
            self._shed_job(older)
        self._partials[call_key] = job
        while len(self._partials) > self._max_partials:
            self._shed_job(self._partials.pop(next(iter(self._partials))))
        self._pump()
        return job.future

    def stats(self) -> AsrStats:
        return AsrStats(
            queued_finals=len(self._finals),
            queued_partials=len(self._partials),
            in_flight=len(self._running),
            shed_partials=self._shed,
            failed=self._failed,
            completed=self._completed,
            hung=self.hung(),
        )

    def hung(self, now: float | None = None) -> int:
        """Model calls running longer than `hang_after_s` (each holds a worker until it returns)."""
        limit = (time.monotonic() if now is None else now) - self.hang_after_s
        return sum(1 for job in self._running if job.started <= limit)

    @property
    def exhausted(self) -> bool:
        """Every worker is stuck in a hung model call: no final can be transcribed."""
        return self.hung() >= self.workers

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Stop taking work, shed queued partials, finish queued and running finals, stop the threads.
        After `timeout_s` the finals still queued or running fail (AsrError) and hung threads are left
        behind (daemon threads: they do not hold up exit)."""
        self._closed = True
        for job in list(self._partials.values()):
            self._shed_job(job)
        self._partials.clear()
        try:
            async with asyncio.timeout(timeout_s):
                while self._finals or self._running:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            left = list(self._finals) + list(self._running)
            self._finals.clear()
            for job in left:
                if not job.future.done():
                    job.future.set_exception(AsrError(f"scheduler closed (call {job.call_key})"))
        self._executor.shutdown(wait=False)

    async def _acquire(self, call_key: str) -> None:
        while self._finals_held.get(call_key, 0) >= self._max_finals:
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._final_waiters.setdefault(call_key, collections.deque())
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._final_waiters.pop(call_key, None)
        self._finals_held[call_key] = self._finals_held.get(call_key, 0) + 1

    def _release(self, call_key: str) -> None:
        held = self._finals_held.pop(call_key) - 1
        if held:
            self._finals_held[call_key] = held
        for waiter in self._final_waiters.get(call_key, ()):
            if not waiter.done():
                waiter.set_result(None)
                break

    def _shed_job(self, job: _Job) -> None:
        self._shed += 1
        if not job.future.done():
            job.future.set_result(None)

    def _pump(self) -> None:
        """Start queued jobs on free workers; runs on the loop after every submit and completion."""
        loop = asyncio.get_running_loop()
        while len(self._running) < self.workers:
            if self._finals:
                job = self._finals.popleft()
            elif self._partials and sum(j.partial for j in self._running) < self._partial_slots:
                job = self._partials.pop(next(iter(self._partials)))
            else:
                break
            self._running.add(job)
            job.started = time.monotonic()
            work = loop.run_in_executor(self._executor, self._run, job.pcm, job.partial)
            work.add_done_callback(lambda w, job=job: self._done(job, w))  # type: ignore[misc]
        if not self._running and not self._finals:
            self._idle.set()

    def _run(self, pcm16k: bytes, partial: bool) -> Transcript:
        return self._transcriber.transcribe(pcm16k, partial=partial)

    def _done(self, job: _Job, work: asyncio.Future[Transcript]) -> None:
        self._running.discard(job)
        if not job.partial:
            self._release(job.call_key)
        exc = None if work.cancelled() else work.exception()
        if work.cancelled() or exc is not None:
            self._failed += 1
            if not job.future.done():
                if job.partial:
                    job.future.set_result(None)
                else:
                    err = AsrError(f"transcription failed (call {job.call_key}, {len(job.pcm)} bytes)")
                    err.__cause__ = exc
                    job.future.set_exception(err)
        else:
            self._completed += 1
            if not job.future.done():
                job.future.set_result(work.result())
        self._pump()

"""Decode/VAD for every track of the process in one thread hop per tick, not one hop per track.

Each track's speech task waits for the pool's shared tick (every `window_s` on the loop clock), takes what
its queue holds and submits it. Submissions made in the same loop iteration (all the tasks the tick woke)
cross to a worker thread as ONE job that runs them track by track; each task gets back its own events, or
its own exception. A hop costs about 0.2 ms of CPU whatever the job's size (vad_bench: `to_thread_hop`), half
of what a track's 0.1 s of decode/VAD costs, so N tracks ticking together pay it once instead of N times.
Ticks on shared boundaries also halve the average wait: a frame waits for the next boundary, not a full
window after the first frame of its batch.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Protocol

from media.frames import EncodedFrame
from worker.calls.track import SpeechEvent


class Speech(Protocol):
    def process(self, batch: list[EncodedFrame], ended: bool, partials: bool) -> list[SpeechEvent]: ...


_Job = tuple[Speech, list[EncodedFrame], bool, bool]
_Outcome = list[SpeechEvent] | Exception


def _run(jobs: Sequence[_Job]) -> list[_Outcome]:
    """On the worker thread: every job in turn; one job's failure is that job's outcome, not the hop's."""
    out: list[_Outcome] = []
    for speech, batch, ended, partials in jobs:
        try:
            out.append(speech.process(batch, ended, partials))
        except Exception as exc:  # handed back to the track whose batch raised
            out.append(exc)
    return out


class SpeechPool:
    """Shared by the tracks of all calls on one event loop. `hops` counts thread hops (for tests/metrics)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.hops = 0
        self.jobs = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[_Job, asyncio.Future[list[SpeechEvent]]]] = []
        self._flush_scheduled = False

    async def tick(self) -> None:
        """Return at the next tick: the next multiple of `window_s` on the loop clock, the same for all."""
        loop = self._bind()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            w = self.window_s
            self._timer = loop.call_at((math.floor(loop.time() / w) + 1) * w, self._release)
        await waiter  # a cancelled waiter is skipped at release; the others still wake

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop; an engine outliving its loop (tests) starts clean on the next one, where the
        old loop's timer and scheduled flush would never run."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._timer, self._waiters = loop, None, []
            self._pending, self._flush_scheduled = [], False
        return loop

    def _release(self) -> None:
        self._timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def process(
        self, speech: Speech, batch: list[EncodedFrame], ended: bool, partials: bool
    ) -> list[SpeechEvent]:
        """`speech.process(batch, ended, partials)` on a worker thread, with whatever else is submitted in
        this loop iteration. A track must await its result before submitting its next batch (order)."""
        loop = self._bind()
        result: asyncio.Future[list[SpeechEvent]] = loop.create_future()
        self._pending.append(((speech, batch, ended, partials), result))
        if not self._flush_scheduled:
            # call_soon runs after the callbacks already queued: the other tracks this tick woke submit first.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await result

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        self.hops += 1
        self.jobs += len(pending)
        loop = asyncio.get_running_loop()
        hop = loop.run_in_executor(None, _run, [job for job, _ in pending])
        hop.add_done_callback(lambda done: self._deliver(pending, done))

    @staticmethod
    def _deliver(
        pending: list[tuple[_Job, asyncio.Future[list[SpeechEvent]]]], done: asyncio.Future[list[_Outcome]]
    ) -> None:
        waiting = [(i, result) for i, (_, result) in enumerate(pending) if not result.done()]
        if done.cancelled():  # the loop is shutting down
            for _, result in waiting:
                result.cancel()
            return
        if (exc := done.exception()) is not None:
            for _, result in waiting:
                result.set_exception(exc)
            return
        outcomes = done.result()
        for i, result in waiting:  # a result already done: its task was cancelled while the hop ran
            outcome = outcomes[i]
            if isinstance(outcome, Exception):
                result.set_exception(outcome)
            else:
                result.set_result(outcome)

"""Bounded shutdown: the drain budget's arithmetic, and a hung model that is visible (metric, /readyz) and
never holds up the exit (worker.calls.drain, media.asr_sched). The serve-process drain tests (slow and locked
storage) are in tests/test_faults_serve.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from media.asr_sched import AsrError, AsrScheduler
from media.events import Transcript
from tests.support import REPO
from worker.calls.drain import AFTER_S, DrainBudget
from worker.cli.serve import readiness


def test_drain_budget_steps_share_one_deadline() -> None:
    """Calls run for drain_s; every later step is cut to what is left of AFTER_S, keeping its reserve."""
    b = DrainBudget(started=100.0, drain_s=30.0)
    assert b.calls_end_at == 130.0 and b.done_at == 130.0 + AFTER_S
    assert b.left(now=100.0, reserve=2.0) == 30.0 + AFTER_S - 2.0
    assert b.left(now=135.0, reserve=2.0) == AFTER_S - 7.0
    assert b.left(now=150.0) == 0.0  # past the end: no step waits at all
    assert b.at(reserve=99.0) == b.calls_end_at  # a reserve never reaches back into the calls' time


class Hung:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        self.started += 1
        self.release.wait(30)
        return Transcript(text="late", no_speech_prob=0.0)


async def test_hung_model_is_counted_and_degrades_readiness_once_the_pool_is_exhausted() -> None:
    """Two workers; one model call hangs: counted hung after `hang_after_s`, still ready; the second
    hangs too: the pool is exhausted and /readyz's check says so. A bounded aclose fails the waiting
    finals and returns at its timeout although both threads are still stuck."""
    model = Hung()
    sched = AsrScheduler(model, workers=2, hang_after_s=0.2)
    rt: Any = SimpleNamespace(stores=SimpleNamespace(degraded=False))
    first = asyncio.ensure_future(sched.submit_final("a/0", b"\0" * 320))
    await asyncio.sleep(0.35)
    assert sched.hung() == 1 and sched.stats().hung == 1 and not sched.exhausted
    assert readiness(rt, sched) == (True, "ok")
    second = asyncio.ensure_future(sched.submit_final("b/0", b"\0" * 320))
    await asyncio.sleep(0.35)
    assert sched.hung() == 2 and sched.exhausted
    assert readiness(rt, sched) == (False, "asr degraded: all 2 workers stuck in model calls")
    t0 = time.monotonic()
    await sched.aclose(0.3)
    assert time.monotonic() - t0 < 1.0
    for fut in (first, second):
        with pytest.raises(AsrError, match="scheduler closed"):
            await fut
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("asr_"))
    model.release.set()


def test_process_exits_with_a_thread_stuck_in_the_model() -> None:
    """A process whose model call never returns still exits promptly after a bounded aclose (a
    ThreadPoolExecutor's threads are joined at interpreter exit: it used to hang there for good)."""
    script = textwrap.dedent(
        """
        import asyncio, threading
        from media.asr_sched import AsrScheduler
        from media.events import Transcript

        class Stuck:
            def transcribe(self, pcm16k, *, partial=False):
                threading.Event().wait()  # forever
                return Transcript(text="", no_speech_prob=0.0)

        async def main():
            sched = AsrScheduler(Stuck(), workers=1)
            task = asyncio.ensure_future(sched.submit_final("a/0", b"\\0" * 320))
            await asyncio.sleep(0.2)
            await sched.aclose(0.2)
            await asyncio.wait([task])
            print("closed", type(task.exception()).__name__, flush=True)

        asyncio.run(main())
        """
    )
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "closed AsrError"
    assert time.monotonic() - t0 < 15

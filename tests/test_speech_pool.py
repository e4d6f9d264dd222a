"""SpeechPool: one thread hop per tick for every track's batch, each track its own result or exception."""

from __future__ import annotations

import asyncio
import threading

import pytest

from media.events import SpeechStarted
from media.frames import EncodedFrame
from worker.calls.speech_pool import SpeechPool
from worker.calls.track import SpeechEvent


class Echo:
    """Returns one SpeechStarted per frame (start = the frame's timestamp); records the thread it ran on."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.threads: set[int] = set()

    def process(self, batch: list[EncodedFrame], ended: bool, partials: bool) -> list[SpeechEvent]:
        self.threads.add(threading.get_ident())
        if self.fail:
            raise ValueError("bad batch")
        return [SpeechStarted(float(f.timestamp)) for f in batch]


def frames(*stamps: int) -> list[EncodedFrame]:
    return [EncodedFrame(payload=b"\xf8", timestamp=t) for t in stamps]


async def test_tracks_woken_by_one_tick_share_one_hop() -> None:
    pool = SpeechPool(0.05)
    tracks = [Echo() for _ in range(6)]
    woke: list[float] = []
    loop = asyncio.get_running_loop()

    await pool.tick()  # on a boundary: the waits below all start within the next window

    async def track(i: int) -> list[SpeechEvent]:
        await asyncio.sleep(0.01 * (i % 3))  # waiting starts at different times within the window
        await pool.tick()
        woke.append(loop.time())
        return await pool.process(tracks[i], frames(i, 100 + i), False, False)

    results = await asyncio.gather(*(track(i) for i in range(6)))
    assert results == [[SpeechStarted(float(i)), SpeechStarted(float(100 + i))] for i in range(6)]
    assert pool.hops == 1 and pool.jobs == 6
    assert max(woke) - min(woke) < 0.005  # the same tick, one loop iteration
    assert all(t.threads and threading.get_ident() not in t.threads for t in tracks)  # off the loop


async def test_one_failing_batch_fails_only_its_track() -> None:
    pool = SpeechPool(0.05)
    good, bad = Echo(), Echo(fail=True)
    outcomes = await asyncio.gather(
        pool.process(good, frames(1), False, False),
        pool.process(bad, frames(2), False, False),
        pool.process(good, frames(3), False, False),
        return_exceptions=True,
    )
    assert outcomes[0] == [SpeechStarted(1.0)] and outcomes[2] == [SpeechStarted(3.0)]
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad batch"
    assert pool.hops == 1


async def test_cancelled_waiters_do_not_stop_the_others() -> None:
    pool = SpeechPool(0.05)
    quitter = asyncio.create_task(pool.tick())
    stayer = asyncio.create_task(pool.tick())
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.wait_for(stayer, 1)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    # A result whose task was cancelled while the hop ran is dropped; the others are delivered.
    gone = asyncio.create_task(pool.process(Echo(), frames(1), False, False))
    kept = asyncio.create_task(pool.process(Echo(), frames(2), False, False))
    await asyncio.sleep(0)
    gone.cancel()
    assert await asyncio.wait_for(kept, 1) == [SpeechStarted(2.0)]
    assert gone.cancelled()


async def test_ticks_land_on_window_boundaries() -> None:
    pool = SpeechPool(0.04)
    loop = asyncio.get_running_loop()
    for _ in range(5):
        before = loop.time()
        await pool.tick()
        after = loop.time()
        assert 0 < after - before <= 0.04 + 0.02  # the next boundary, not a full window later
        assert abs(after / 0.04 - round(after / 0.04)) < 0.25  # on a multiple of the window (loop clock)


def test_a_pool_outlives_its_event_loop() -> None:
    """An engine (and its pool) used by one asyncio.run and then another: the second loop still ticks."""
    pool = SpeechPool(0.02)

    async def leave_a_timer() -> None:
        asyncio.get_running_loop().call_soon(lambda: None)
        waiter = asyncio.ensure_future(pool.tick())
        await asyncio.sleep(0)
        waiter.cancel()  # the loop ends before the tick: its timer never fires

    async def tick_and_process() -> list[SpeechEvent]:
        await asyncio.wait_for(pool.tick(), 1)
        return await pool.process(Echo(), frames(7), False, False)

    asyncio.run(leave_a_timer())
    assert asyncio.run(tick_and_process()) == [SpeechStarted(7.0)]

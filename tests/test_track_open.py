"""Opening a track does its key wrapping off the event loop: a key provider that blocks (a key file on a
slow disk, a KMS round trip) must not stall every other call's media."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from storage.factory import memory_stores
from storage.keys import LocalKeyFile
from storage.protocols import CallInfo, WrappedKey
from worker.calls.track import TrackSealer

BLOCK_S = 0.4


class SlowKeys(LocalKeyFile):
    """A real key file whose `wrap` blocks its thread, as a KMS call or a slow disk would."""

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        time.sleep(BLOCK_S)
        return super().wrap(key, context)


async def test_track_open_does_not_block_the_loop(tmp_path: Path) -> None:
    keys = SlowKeys(tmp_path / "kek.json")
    keys.load()
    stores = memory_stores()
    await stores.transcripts.create_call(
        CallInfo(call_id="call-1", org_id="org-a", source="whip", started_at="2026-01-01T00:00:00.000Z")
    )
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        sealer = await TrackSealer.create(
            call_id="call-1", track=0, keys=keys, transcripts=stores.transcripts, recordings=stores.recordings
        )
    finally:
        tick.cancel()
    assert sealer.sealed == 0
    assert gaps and max(gaps) < BLOCK_S / 2, gaps

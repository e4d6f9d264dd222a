"""Plant stored calls in a data directory (real stores, KEK and sealed recording) for CLI tests, no model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from media.frames import FRAME_SAMPLES
from media.opus import OpusEncoder
from storage.factory import open_stores
from storage.keys import LocalKeyFile
from storage.protocols import CallInfo, UtteranceRecord, format_timestamp
from worker.calls.track import TrackSealer


def plant_call(
    data_dir: Path,
    kek_file: Path,
    call_id: str,
    org_id: str,
    *,
    text: str = "hello from the clinic",
    timestamps: Sequence[int] | None = None,
) -> None:
    """An ended call of `org_id` with one utterance and track 0 sealed (20 ms tone frames at `timestamps`,
    48 kHz; default 50 contiguous frames)."""
    asyncio.run(_plant(data_dir, kek_file, call_id, org_id, text, timestamps))


async def _plant(
    data_dir: Path, kek_file: Path, call_id: str, org_id: str, text: str, timestamps: Sequence[int] | None
) -> None:
    keys = LocalKeyFile(kek_file)
    stores = await open_stores(data_dir, keys=keys)
    now = format_timestamp(datetime.now(UTC))
    try:
        t = stores.transcripts
        await t.create_call(CallInfo(call_id, org_id, "replay", now, fixture="planted.wav"))
        sealer = await TrackSealer.create(
            call_id=call_id, track=0, keys=keys, transcripts=t, recordings=stores.recordings
        )
        enc = OpusEncoder()
        tone = bytes(range(256)) * (FRAME_SAMPLES * 2 // 256) + bytes(FRAME_SAMPLES * 2 % 256)
        stamps = list(timestamps) if timestamps is not None else [i * FRAME_SAMPLES for i in range(50)]
        for ts in stamps:
            await sealer.seal(ts, enc.encode(tone))
        await sealer.close()
        await t.update_track_counts(
            call_id, 0, received=len(stamps), sealed=len(stamps), lost=0, duration_s=len(stamps) * 0.02
        )
        await t.append_utterance(UtteranceRecord(call_id, 0, 0, 0.0, 1.0, text, now))
        await t.end_call(call_id, format_timestamp(datetime.now(UTC)), "ended", None)
    finally:
        await stores.close()

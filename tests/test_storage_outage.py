"""Storage outage mid-call on real servers: PostgreSQL and SeaweedFS stop while a call keeps writing sealed
audio and sealed utterances through the spooling wrappers, and start again; afterwards every record and
every utterance is there, in order, and nothing unsealed ever touched the spool disk."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from media.sframe import protect
from storage.factory import open_stores
from storage.keys import LocalKeyFile
from storage.protocols import TrackInfo
from tests.servers import (
    PostgresServer,
    SeaweedServer,
    aws_env,
    new_bucket,
    new_database,
    own_servers,
)
from tests.storage_contract import T0, make_call, make_utt, make_wrapped

__all__ = ["aws_env", "own_servers"]  # fixtures, re-exported

pytestmark = pytest.mark.slow

SUITE = 4
AUDIO_CANARY = b"AUDIO-PLAINTEXT-CANARY"
TEXT_CANARY = "patient said canary"
OUTAGE_S = 6.0  # well inside the 60 s the issue asks for; long enough for many spooled writes


def spool_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


async def test_postgres_and_s3_stop_and_restart_mid_call(
    own_servers: tuple[PostgresServer, SeaweedServer], aws_env: None, tmp_path: Path, kek_file: Path
) -> None:
    pg, s3 = own_servers
    db_url, bucket_url = await new_database(pg), await new_bucket(s3)
    spool_dir = tmp_path / "spool"
    stores = await open_stores(
        tmp_path / "data", database_url=db_url, object_store_url=bucket_url, keys=LocalKeyFile(kek_file),
        spool_dir=spool_dir,
    )  # fmt: skip
    call = make_call()
    await stores.transcripts.create_call(call)
    await stores.transcripts.put_track(TrackInfo(call.call_id, 0, SUITE, 7, make_wrapped()))
    sink = await stores.recordings.open_track(call.call_id, 0)
    base_key = os.urandom(16)

    records: list[bytes] = []
    texts: list[str] = []
    seen_degraded = False
    spool_snapshots: list[bytes] = []
    outage: asyncio.Task[None] | None = None
    outage_done = asyncio.Event()

    async def stop_and_restart() -> None:
        await asyncio.gather(asyncio.to_thread(pg.stop), asyncio.to_thread(s3.stop))
        await asyncio.sleep(OUTAGE_S)
        await asyncio.gather(asyncio.to_thread(pg.start), asyncio.to_thread(s3.start))
        outage_done.set()

    ctr = 0
    started = time.monotonic()
    while not outage_done.is_set() or ctr < 600:
        assert time.monotonic() - started < 120, "the call loop ran too long"
        ctr += 1
        record = protect(SUITE, base_key, 7, ctr, AUDIO_CANARY + ctr.to_bytes(4, "big"))
        records.append(record)
        await sink.append(record)
        if ctr % 10 == 0:  # every 200 ms of "audio": flush, an utterance, the counts
            await sink.flush()
            seq = len(texts)
            texts.append(f"{TEXT_CANARY} {seq}")
            await stores.transcripts.append_utterance(
                make_utt(call.call_id, seq=seq, start=seq * 0.2, end=seq * 0.2 + 0.1, text=texts[-1])
            )
            await stores.transcripts.update_track_counts(
                call.call_id, 0, received=ctr, sealed=ctr, lost=0, duration_s=ctr * 0.02
            )
            seen_degraded = seen_degraded or stores.degraded
            if stores.degraded:
                spool_snapshots.append(spool_bytes(spool_dir))
        if ctr == 100:
            outage = asyncio.create_task(stop_and_restart())
        await asyncio.sleep(0.02)
    assert outage is not None
    await outage
    await sink.close()
    await stores.transcripts.end_call(call.call_id, T0, "ended", "hangup")

    async with asyncio.timeout(60):
        while stores.degraded:  # noqa: ASYNC110  # polls the drain tasks' progress
            await asyncio.sleep(0.1)
    assert seen_degraded and stores.spooled_bytes > 0
    for raw in [*spool_snapshots, spool_bytes(spool_dir)]:
        assert AUDIO_CANARY not in raw and TEXT_CANARY.encode() not in raw and b"canary" not in raw

    assert await stores.recordings.read_track(call.call_id, 0) == b"".join(records)
    got = await stores.transcripts.get_utterances(call.call_id)
    assert [u.text for u in got] == texts and [u.seq for u in got] == list(range(len(texts)))
    track = await stores.transcripts.get_track(call.call_id, 0)
    assert track.frames_received == (ctr // 10) * 10
    assert (await stores.transcripts.get_call(call.call_id)).end_reason == "hangup"
    await stores.close()
    assert spool_bytes(spool_dir) == b""

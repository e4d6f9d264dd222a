"""`converse-worker replay`: run recorded call fixtures through the same pipeline as a live call.

Each fixture track is Opus-encoded (as a WebRTC sender would) and pushed frame by frame, all tracks on one
timeline; the pipeline decodes the Opus for ASR, so a replay and a live call store the same records.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from media.fixtures import Fixture, FixtureError, iter_frames, load_fixture
from media.frames import FRAME_SAMPLES, FRAME_SECONDS, EncodedFrame
from media.opus import OpusEncoder
from worker.calls.contracts import CallSummary, FinalResult
from worker.calls.engine import Engine

log = structlog.get_logger("worker.calls.replay")

Emit = Callable[[dict[str, Any]], None]
_ENCODE_CHUNK = 50  # frames encoded per trip to a worker thread (1 s of audio)


def _encode_chunk(encoder: OpusEncoder, frames: list[bytes]) -> list[bytes]:
    return [encoder.encode(f) for f in frames]


async def replay_one(
    engine: Engine,
    fixture: Fixture,
    *,
    realtime: bool,
    emit: Emit,
    progress: Callable[[int], None] | None = None,
) -> CallSummary:
    def on_final(r: FinalResult) -> None:
        emit(
            {
                "event": "final",
                "call_id": r.call_id,
                "fixture": fixture.name,
                "track": r.track,
                "start": r.start,
                "end": r.end,
                "text": r.text,
                "committed_at": r.committed_at,
                "speech_end": r.speech_end,
                "time_to_final": r.time_to_final,
                "held": r.held,  # waited for the next final to be redacted with it (redact.hold)
            }
        )

    call = await engine.start_call(
        source="replay", fixture=fixture.name, variables=fixture.variables, on_final=on_final
    )
    try:
        tracks = [await call.open_track() for _ in fixture.tracks]
        encoders = [OpusEncoder() for _ in fixture.tracks]
        per_track = [list(iter_frames(t.pcm)) for t in fixture.tracks]
        n_frames = max(len(f) for f in per_track)
        silence = bytes(FRAME_SAMPLES * 2)
        for frames in per_track:  # shorter tracks end in silence: one timeline for the call
            frames.extend([silence] * (n_frames - len(frames)))
        emit({"event": "call_started", "call_id": call.call_id, "fixture": fixture.name})
        t0 = time.monotonic()
        for base in range(0, n_frames, _ENCODE_CHUNK):
            encoded = [
                await asyncio.to_thread(_encode_chunk, enc, frames[base : base + _ENCODE_CHUNK])
                for enc, frames in zip(encoders, per_track, strict=True)
            ]
            for j in range(len(encoded[0])):
                i = base + j
                if realtime:
                    # Pace by frame time, not by wall-clock increments, so jitter does not accumulate.
                    delay = t0 + i * FRAME_SECONDS - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                for track, payloads in zip(tracks, encoded, strict=True):
                    await track.push(EncodedFrame(payload=payloads[j], timestamp=i * FRAME_SAMPLES))
                if progress is not None:
                    progress(1)
    except BaseException:
        await asyncio.shield(call.finish("failed", "replay interrupted"))
        raise
    summary = await call.finish("ended", "fixture complete")
    emit(
        {
            "event": "call_ended",
            "call_id": call.call_id,
            "fixture": fixture.name,
            "status": summary.status,
            "tracks": summary.tracks,
            "duration": summary.duration_s,
            "frames_received": summary.frames_received,
            "frames_sealed": summary.frames_sealed,
            "frames_lost": summary.frames_lost,
            "utterances": summary.utterances,
            "failed_utterances": summary.failed_utterances,
        }
    )
    return summary


async def replay_many(
    engine: Engine,
    paths: Sequence[Path],
    *,
    realtime: bool,
    concurrency: int,
    emit: Emit,
    show_progress: bool,
) -> int:
    """Replays fixtures, up to `concurrency` at once. Returns the number of fixtures that failed."""
    sem = asyncio.Semaphore(max(1, concurrency))
    failures = 0
    bar: Any = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="frame", file=sys.stderr, dynamic_ncols=True, desc="replay")

    async def run(path: Path) -> None:
        nonlocal failures
        async with sem:
            try:
                fixture = await asyncio.to_thread(load_fixture, path)
            except FixtureError as exc:
                failures += 1
                emit({"event": "error", "fixture": path.name, "error": str(exc)})
                return
            if bar is not None:
                bar.total += int(np.ceil(fixture.duration / FRAME_SECONDS))
                bar.refresh()
            try:
                await replay_one(
                    engine, fixture, realtime=realtime, emit=emit, progress=bar.update if bar else None
                )
            except Exception as exc:  # one broken call must not stop the others
                failures += 1
                emit({"event": "error", "fixture": path.name, "error": f"{type(exc).__name__}: {exc}"})

    try:
        async with asyncio.TaskGroup() as tg:
            for p in paths:
                tg.create_task(run(p))
    finally:
        if bar is not None:
            bar.close()
    return failures


def json_emitter(stream: Any = None) -> Emit:
    out = stream or sys.stdout

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        out.flush()  # --realtime observers time each line as it is printed

    return emit


def text_emitter(stream: Any = None) -> Emit:
    out = stream or sys.stdout

    def emit(obj: dict[str, Any]) -> None:
        ev = obj.get("event")
        if ev == "final":
            out.write(
                f"[{obj['fixture']} t{obj['track']} {obj['start']:7.2f}-{obj['end']:7.2f}] {obj['text']}\n"
            )
        elif ev == "call_started":
            out.write(f"call {obj['call_id']} started: {obj['fixture']}\n")
        elif ev == "call_ended":
            out.write(
                f"call {obj['call_id']} ended: {obj['utterances']} utterances, "
                f"{obj['frames_sealed']}/{obj['frames_received']} frames sealed, {obj['frames_lost']} lost\n"
            )
        elif ev == "error":
            out.write(f"error: {obj['fixture']}: {obj['error']}\n")
        out.flush()

    return emit

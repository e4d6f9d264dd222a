"""A WHIP client process that sends a fixture as pre-encoded Opus packets of any frame duration.

`python -m tests.packet_client URL FIXTURE PACKET_MS [SECONDS]`: the fixture's tracks (cut to SECONDS), Opus
encoded beforehand with PACKET_MS frames (2.5 to 120), sent by aiortc as they are (`run_call packets=`), so
the RTP timestamps step by the packet's duration as a SIP gateway's or a `ptime` client's do. Prints the
run's JSON (as `call --json`) with `packet_samples` and `input_samples` (per track, what was sent).
Token from $CONVERSE_API_TOKEN; loopback-only like the `call` command when $CONVERSE_LOOPBACK_ONLY is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from media.fixtures import load_fixture
from media.frames import SAMPLE_RATE
from worker.cli.call_client import encode_track, run_call, track_frames

TAIL_S = 1.5


async def main(url: str, fixture: str, packet_ms: float, seconds: float | None) -> None:
    n = round(packet_ms * SAMPLE_RATE / 1000)
    tracks = [
        t.pcm[: int(seconds * SAMPLE_RATE)] if seconds else t.pcm for t in load_fixture(Path(fixture)).tracks
    ]
    frames = track_frames(max(len(t) for t in tracks), TAIL_S, n)
    packets = [encode_track(t, frames, n) for t in tracks]
    result = await run_call(
        url,
        tracks,
        os.environ["CONVERSE_API_TOKEN"],
        tail_s=TAIL_S,
        loopback_only=os.environ.get("CONVERSE_LOOPBACK_ONLY", "").lower() in ("1", "true", "yes"),
        packets=packets,
        packet_samples=n,
    )
    result["packet_samples"] = n
    result["input_samples"] = [frames * n for _ in tracks]
    print(json.dumps(result))


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], float(args[2]), float(args[3]) if len(args) > 3 else None))

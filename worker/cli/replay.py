"""`replay` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.calls.asr_setup import build_asr
from worker.calls.engine import Engine, EngineConfig
from worker.calls.replay import json_emitter, replay_many, text_emitter
from worker.runtime import open_runtime


async def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.fixtures]
    emit = json_emitter() if args.json else text_emitter()
    async with open_runtime(args) as rt, build_asr(args) as asr:
        engine = Engine(
            transcripts=rt.stores.transcripts,
            recordings=rt.stores.recordings,
            keys=rt.keys,
            asr=asr,
            config=EngineConfig(org_id=args.org_id),
        )
        failures = await replay_many(
            engine,
            paths,
            realtime=args.realtime,
            concurrency=args.concurrency,
            emit=emit,
            show_progress=not args.json and sys.stderr.isatty(),
        )
    if failures:
        print(f"error: {failures} of {len(paths)} fixtures failed", file=sys.stderr)
        return 1
    return 0

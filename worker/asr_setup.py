"""Builds the process's one ASR scheduler (one model shared by every call) from settings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from media.asr import AsrScheduler, WhisperTranscriber
from worker.runtime import asr_threads


@asynccontextmanager
async def build_asr(args: argparse.Namespace) -> AsyncIterator[AsrScheduler]:
    threads = asr_threads(args)
    mode = getattr(args, "asr_mode", "short") or "short"
    if mode not in ("short", "padded"):
        raise ValueError(f"--asr-mode must be 'short' or 'padded', not {mode!r}")
    # One CTranslate2 intra-op thread per worker: on small utterances parallel calls beat parallel ops.
    transcriber = await asyncio.to_thread(
        WhisperTranscriber,
        getattr(args, "model_path", None) or None,
        cpu_threads=1,
        num_workers=threads,
        short_window=mode == "short",
        # Stored utterances keep start/end only; word alignment would cost 12% more CPU per final.
        word_timestamps=False,
    )
    scheduler = AsrScheduler(transcriber, workers=threads)
    try:
        yield scheduler
    finally:
        await scheduler.aclose()

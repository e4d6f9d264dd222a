"""Builds the process's one ASR scheduler (one model shared by every call) from settings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog

from media.asr import AsrScheduler, WhisperTranscriber
from media.models import resolve
from worker.runtime import asr_threads

log = structlog.get_logger("worker.asr")


@asynccontextmanager
async def build_asr(
    args: argparse.Namespace,
    on_model: Callable[[str, str], None] | None = None,
    close_timeout: Callable[[], float | None] = lambda: None,
) -> AsyncIterator[AsrScheduler]:
    """`on_model(name, compute_type)` is told which model was loaded (catalogue name or `custom`). On exit
    the scheduler gets `close_timeout()` seconds to finish its finals (None: no bound; a drain bounds it)."""
    threads = asr_threads(args)
    mode = getattr(args, "asr_mode", "short") or "short"
    if mode not in ("short", "padded"):
        raise ValueError(f"--asr-mode must be 'short' or 'padded', not {mode!r}")
    beam = int(getattr(args, "asr_beam", None) or 1)
    if not 1 <= beam <= 16:
        raise ValueError(f"--asr-beam must be 1..16, not {beam}")
    # Joining a split model the first time reads ~150 MB: off the loop, as the model load is.
    model = await asyncio.to_thread(
        resolve, getattr(args, "model", None) or None, getattr(args, "model_path", None) or None
    )
    # One CTranslate2 intra-op thread per worker: on small utterances parallel calls beat parallel ops.
    transcriber = await asyncio.to_thread(
        WhisperTranscriber,
        model.path,
        cpu_threads=1,
        num_workers=threads,
        short_window=mode == "short",
        # Stored utterances keep start/end only; word alignment would cost 12% more CPU per final.
        word_timestamps=False,
        language=getattr(args, "language", None) or "en",
        beam_size=beam,
        prompt=getattr(args, "asr_prompt", None) or None,
    )
    log.info(
        "asr_model",
        model=model.name,
        compute_type=transcriber.compute_type,
        mode=mode,
        beam=beam,
        prompt=transcriber.prompt is not None,  # the prompt's words are config, never logged
        threads=threads,
    )
    if on_model is not None:
        on_model(model.name, transcriber.compute_type)
    scheduler = AsrScheduler(transcriber, workers=threads)
    try:
        yield scheduler
    finally:
        await scheduler.aclose(close_timeout())

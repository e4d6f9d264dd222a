"""Builds what a command needs from its settings: stores, key provider, ASR scheduler, engine."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from storage.factory import Stores, open_stores
from storage.keys import LocalKeyFile
from storage.protocols import KeyProvider
from worker.config import kek_path

log = structlog.get_logger("worker.runtime")


@dataclass(slots=True)
class Runtime:
    data_dir: Path
    stores: Stores
    keys: KeyProvider


@asynccontextmanager
async def open_runtime(
    args: argparse.Namespace, close_timeout: Callable[[], float | None] = lambda: None
) -> AsyncIterator[Runtime]:
    """The stores and keys; on exit the stores get `close_timeout()` seconds to close (None: no bound;
    `serve` bounds it by its drain budget: a spool or a slow database must not hold up the exit)."""
    data_dir = Path(args.data_dir)
    keys = LocalKeyFile(kek_path(args.kek_file))
    scale_out = bool(args.database_url or args.object_store_url)
    stores = await open_stores(
        data_dir,
        database_url=args.database_url or None,
        object_store_url=args.object_store_url or None,
        keys=keys,  # transcript text is sealed at rest on every backend
        # A pod spools sealed writes to local disk while PostgreSQL or S3 is unreachable.
        spool_dir=data_dir / "spool" if scale_out else None,
    )
    try:
        yield Runtime(data_dir=data_dir, stores=stores, keys=keys)
    finally:
        try:
            async with asyncio.timeout(close_timeout()):
                await stores.close()
        except TimeoutError:
            log.warning("stores_close_timeout")


def asr_threads(args: argparse.Namespace) -> int:
    return int(args.asr_threads) if args.asr_threads else max(1, os.cpu_count() or 1)

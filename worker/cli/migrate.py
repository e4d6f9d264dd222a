"""`migrate`: apply database schema migrations."""

from __future__ import annotations

import argparse
from pathlib import Path

from storage.factory import migrate_stores


async def run(args: argparse.Namespace) -> int:
    applied = await migrate_stores(Path(args.data_dir), database_url=args.database_url or None)
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is current")
    return 0

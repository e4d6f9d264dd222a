"""`keys`, `migrate` and `retention` commands."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from storage.factory import migrate_stores
from storage.keys import rewrap_all
from storage.retention import run_retention
from worker.cli import CommandError
from worker.cli_access import security_for
from worker.runtime import open_runtime
from worker.security import actor_of, local_operator


async def keys(args: argparse.Namespace) -> int:
    async with open_runtime(args) as rt, security_for(args, rt) as sec:
        actor = actor_of(local_operator(args.org_id))
        if args.action == "status":
            kek_id, version = rt.keys.current()
            print(
                json.dumps({"kek_id": kek_id, "version": version})
                if args.json
                else f"KEK {kek_id} version {version}"
            )
            return 0
        before = rt.keys.current()
        version = rt.keys.rotate()
        report = await rewrap_all(rt.stores.transcripts, rt.keys)
        await sec.audit.append(
            actor,
            "keys.rotate",
            f"kek/{before[0]}",
            "ok",
            before={"version": before[1]},
            after={"version": version},
            details={"rewrapped": report.rewrapped, "skipped": report.skipped},
        )
        out = {
            "kek_id": report.kek_id,
            "version": version,
            "rewrapped": report.rewrapped,
            "unchanged": report.unchanged,
            "skipped": report.skipped,
        }
        print(
            json.dumps(out)
            if args.json
            else f"KEK {report.kek_id} now version {version}: {report.rewrapped} track keys re-wrapped"
        )
        return 0


async def migrate(args: argparse.Namespace) -> int:
    applied = await migrate_stores(Path(args.data_dir), database_url=args.database_url or None)
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is current")
    return 0


async def retention(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    if args.now:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(f"--now is not an ISO 8601 time: {args.now!r}") from None
        if now.tzinfo is None:
            raise CommandError("--now needs a time zone (e.g. 2026-12-01T00:00:00Z)")
    async with open_runtime(args) as rt, security_for(args, rt) as sec:
        report = await run_retention(
            rt.stores.transcripts, rt.stores.recordings, now, audit=sec.audit.record_system
        )
        await sec.audit.append(
            actor_of(local_operator(args.org_id)),
            "retention.run",
            "retention",
            "ok",
            details={"deleted": len(report.deleted_calls), "failed": len(report.failed)},
        )
    out = {
        "deleted_calls": report.deleted_calls,
        "keys_destroyed": report.keys_destroyed,
        "failed": report.failed,
        "cutoffs": report.cutoffs,
    }
    print(
        json.dumps(out)
        if args.json
        else f"deleted {len(report.deleted_calls)} calls, destroyed {report.keys_destroyed} keys"
        + (f", {len(report.failed)} failed (retried next run)" if report.failed else "")
    )
    return 1 if report.failed else 0

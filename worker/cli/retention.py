"""`retention run`: delete recordings and transcripts past the retention period."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from storage.retention import run_retention
from worker.auth.security import actor_of, local_operator
from worker.cli.errors import CommandError
from worker.cli.guard import security_for
from worker.runtime import open_runtime


async def run(args: argparse.Namespace) -> int:
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

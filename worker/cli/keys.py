"""`keys`, `migrate` and `retention` commands."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from storage.factory import migrate_stores
from storage.retention import run_retention
from worker import key_rotation
from worker.auth.security import actor_of, local_operator
from worker.cli.errors import CommandError
from worker.cli.guard import security_for
from worker.runtime import open_runtime


async def keys(args: argparse.Namespace) -> int:
    async with open_runtime(args) as rt, security_for(args, rt) as sec:
        actor = actor_of(local_operator(args.org_id))
        store = rt.stores.transcripts
        if args.action == "status":
            st = await key_rotation.status(rt.keys, store, sec.totp)
            if args.json:
                print(json.dumps(st))
            else:
                print(f"KEK {st['kek_id']} version {st['version']}")
                for kind, counts in st["kinds"].items():
                    on = ", ".join(f"v{v}: {n}" for v, n in counts.items()) or "none"
                    print(f"  {kind}: {on}")
            return 0
        before = rt.keys.current()
        report = await key_rotation.rotate(rt.keys, store, sec.totp)
        out = key_rotation.report_json(report)
        await sec.audit.append(
            actor,
            "keys.rotate",
            f"kek/{before[0]}",
            "ok" if not report.skipped else "error",
            before={"version": before[1]},
            after={"version": report.version},
            details={"rewrapped": report.rewrapped, "skipped": report.skipped, "kinds": out["kinds"]},
        )
        if args.json:
            print(json.dumps(out))
        else:
            done = ", ".join(f"{k.rewrapped} {_NOUNS.get(kind, kind)}" for kind, k in report.kinds.items())
            print(f"KEK {report.kek_id} now version {report.version}: re-wrapped {done}")
        return 0


_NOUNS = {"track": "track keys", "text": "transcript keys", "totp": "TOTP secrets"}


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

"""`keys rotate|status`: key-encryption keys."""

from __future__ import annotations

import argparse
import json

from worker import key_rotation
from worker.auth.security import actor_of, local_operator
from worker.cli.guard import security_for
from worker.runtime import open_runtime


async def run(args: argparse.Namespace) -> int:
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

"""`audit verify|checkpoint|show|prove|repair`: the tamper-evident audit log."""

from __future__ import annotations

import argparse
import json
import sys

from worker.auth.security import actor_of, local_operator
from worker.cli.errors import CommandError
from worker.cli.guard import security_for


async def run(args: argparse.Namespace) -> int:
    async with security_for(args) as sec:
        log = sec.audit
        actor = actor_of(local_operator(args.org_id))
        if args.action == "verify":
            findings = await log.verify()
            notes = list(getattr(log, "notes", []) or [])  # e.g. checkpoints in a bucket without Object Lock
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            await log.append(
                actor,
                "cli.verify_audit",
                "audit",
                "ok" if not findings else "error",
                details={"findings": len(findings)},
            )
            if args.json:
                print(
                    json.dumps(
                        {
                            "ok": not findings,
                            "findings": [
                                {
                                    "kind": f.kind,
                                    "message": f.message,
                                    "seq": f.seq,
                                    "checkpoint": f.checkpoint,
                                }
                                for f in findings
                            ],
                        }
                    )
                )
            else:
                for f in findings:
                    print(f.message)
                if not findings:
                    print("audit log verified: no findings")
            if findings:
                print(
                    f"error: audit verify: {len(findings)} finding(s); first: {findings[0].message}",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.action == "checkpoint":
            cp = await log.checkpoint()
            print(
                json.dumps(cp)
                if args.json
                else f"checkpoint {cp.get('seq', '')}: tree size "
                f"{cp.get('tree_size')} root {cp.get('root_hash')}"
            )
            return 0
        if args.action == "show":
            rows = await log.entries(0, 1000)
            rows = rows[-args.limit :]
            await log.append(actor, "cli.read_audit", "audit", "allowed", details={"entries": len(rows)})
            for row in rows:
                print(
                    json.dumps(row, ensure_ascii=False)
                    if args.json
                    else f"{row.get('seq'):>6} {row.get('ts')} {row.get('action')} {row.get('resource')} "
                    f"{row.get('outcome')} {(row.get('actor') or {}).get('user_id')}"
                )
            return 0
        if args.action == "repair":
            repaired = await log.repair()
            await log.append(actor, "audit.repair", "audit", "ok", details={"triggers_recreated": repaired})
            print(
                json.dumps({"triggers_recreated": repaired})
                if args.json
                else f"recreated triggers: {', '.join(repaired)}"
                if repaired
                else "append-only triggers are all present"
            )
            return 0
        if args.action == "prove":
            try:
                proof = await log.inclusion_proof(args.seq)
            except Exception as exc:
                raise CommandError(str(exc)) from None
            print(json.dumps(proof.to_json()))
            return 0
    raise CommandError(f"unknown audit action {args.action}")

"""`audit` and `token` commands."""

from __future__ import annotations

import argparse
import json
import sys
import time

from worker.cli import CommandError
from worker.cli_access import security_for
from worker.identity import IdentityError, issue_for_user
from worker.security import actor_of, local_operator
from worker.totp import TotpError


async def audit(args: argparse.Namespace) -> int:
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
        if args.action == "prove":
            try:
                proof = await log.inclusion_proof(args.seq)
            except Exception as exc:
                raise CommandError(str(exc)) from None
            print(json.dumps(proof.to_json()))
            return 0
    raise CommandError(f"unknown audit action {args.action}")


async def token(args: argparse.Namespace) -> int:
    async with security_for(args) as sec:
        operator = actor_of(local_operator(args.org_id))
        if args.action == "enroll":
            try:
                enrol = sec.totp.enroll(args.user, getattr(args, "email", None) or args.user, replace=True)
            except TotpError as exc:
                raise CommandError(str(exc)) from None
            await sec.audit.append(operator, "user.totp_enrolled", f"user/{args.user}", "ok")
            out = {"user": args.user, "secret": enrol.secret, "uri": enrol.uri}
            print(json.dumps(out) if args.json else f"secret: {enrol.secret}\nuri: {enrol.uri}")
            return 0
        try:
            jwt_ = issue_for_user(
                sec.issuer,
                sec.totp,
                user_id=args.user,
                email=args.email,
                org_id=args.org,
                role=args.role,
                code=args.totp,
                now=time.time(),
                ttl_s=args.ttl,
            )
        except (IdentityError, TotpError) as exc:
            await sec.audit.append(
                operator,
                "token.issue",
                f"user/{args.user}",
                "denied",
                details={"reason": str(exc), "role": args.role},
            )
            raise CommandError(str(exc)) from None
        await sec.audit.append(
            operator,
            "token.issue",
            f"user/{args.user}",
            "ok",
            details={"role": args.role, "email": args.email, "mfa": args.totp is not None},
        )
        print(json.dumps({"token": jwt_, "expires_in": args.ttl}) if args.json else jwt_)
        return 0

"""`audit` and `token` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import NoReturn

from worker.auth.access import Permission, check
from worker.auth.identity import IdentityError, issue_for_user
from worker.auth.security import actor_of, local_operator
from worker.auth.totp import TotpError
from worker.cli.errors import CommandError
from worker.cli.guard import caller, security_for


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


async def token(args: argparse.Namespace) -> int:
    """`token enroll|issue`, as docs/access.md says: enrolling a user and issuing a token for someone who is
    not enrolled take `manage_users` in that user's organisation (the caller is the token's principal, else
    the local custodian, an Owner of `--org-id`); an enrolled user's TOTP code is their credential, and their
    token carries the organisation and role of the enrolment, nothing else."""
    async with security_for(args) as sec:
        enrolling = args.action == "enroll"
        action, resource = ("user.totp_enrolled" if enrolling else "token.issue"), f"user/{args.user}"
        principal = (await caller(args, sec, action, resource)).principal
        actor = actor_of(principal)

        async def refuse(reason: str, **details: object) -> NoReturn:
            await sec.audit.append(actor, action, resource, "denied", details={"reason": reason, **details})
            raise CommandError(f"denied: {reason}")

        async def manage_users(org: str) -> None:
            decision = check(principal, Permission.MANAGE_USERS, org_id=org)
            if not decision.allowed:
                await refuse(decision.reason)

        if enrolling:
            org = args.org or principal.org_id
            await manage_users(org)
            replaced = await asyncio.to_thread(sec.totp.is_enrolled, args.user)
            try:
                enrol = await asyncio.to_thread(
                    sec.totp.enroll,
                    args.user,
                    args.email or args.user,
                    replace=args.replace,
                    org_id=org,
                    role=args.role,
                )
            except TotpError as exc:
                reason = f"{exc} (re-enrol with --replace)" if replaced and not args.replace else str(exc)
                await refuse(reason)
            await sec.audit.append(
                actor, action, resource, "ok", details={"org": org, "role": args.role, "replaced": replaced}
            )
            out = {"user": args.user, "secret": enrol.secret, "uri": enrol.uri}
            print(json.dumps(out) if args.json else f"secret: {enrol.secret}\nuri: {enrol.uri}")
            return 0
        account = await asyncio.to_thread(sec.totp.account, args.user)
        if account is not None:  # the code is the credential; the enrolment decides organisation and role
            org = account.org_id or principal.org_id  # enrolled before organisations were recorded
            role = account.role or args.role
            if args.org is not None and args.org != org:
                await refuse(f"--org does not match the enrolment of user {args.user}")
            if args.role is not None and args.role != role:
                await refuse(f"--role does not match the enrolment of user {args.user}")
        else:  # a token for someone else, without mfa: manage_users in their organisation
            org, role = args.org or principal.org_id, args.role
            await manage_users(org)
        if role is None:
            raise CommandError(f"user {args.user} has no role on record: give --role")
        try:
            jwt_ = await asyncio.to_thread(
                issue_for_user,
                sec.issuer,
                sec.totp,
                user_id=args.user,
                email=args.email or (account.email if account else None),
                org_id=org,
                role=role,
                code=args.totp,
                now=time.time(),
                ttl_s=args.ttl,
            )
        except (IdentityError, TotpError) as exc:
            await refuse(str(exc), role=role)
        await sec.audit.append(
            actor,
            action,
            resource,
            "ok",
            details={"org": org, "role": role, "mfa": args.totp is not None},
        )
        print(json.dumps({"token": jwt_, "expires_in": args.ttl}) if args.json else jwt_)
        return 0

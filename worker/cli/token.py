"""`token enroll|issue`: identities for the embedded issuer."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import NoReturn

from worker.auth.access import Permission, check
from worker.auth.identity import IdentityError, issue_for_user
from worker.auth.security import actor_of
from worker.auth.totp import TotpError
from worker.cli.errors import CommandError
from worker.cli.guard import caller, security_for


async def run(args: argparse.Namespace) -> int:
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

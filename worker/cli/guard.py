"""Access check + audit entry around every CLI action that reads PHI or changes security state.

With a token (`--token` / `CONVERSE_TOKEN`) the CLI answers exactly as the admin API does: the token's role
and MFA decide, a principal acts only on its own organisation, and another organisation's call does not
exist for it (the same "no call <id>" and exit code as a missing call; the audit entry records the denial).
Without a token the caller is the local custodian of the data directory and KEK file (`local_operator`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from storage.errors import InvalidIdError, NotFoundError
from storage.protocols import CallInfo
from worker.auth.access import Permission, Principal, check
from worker.auth.identity import IdentityError
from worker.auth.security import Security, actor_of, local_operator, open_security
from worker.cli.errors import CommandError
from worker.config import kek_path
from worker.runtime import Runtime


@asynccontextmanager
async def security_for(args: argparse.Namespace, rt: Runtime | None = None) -> AsyncIterator[Security]:
    from pathlib import Path

    sec = open_security(
        Path(args.data_dir),
        kek_path(args.kek_file),
        api_token=os.environ.get("CONVERSE_API_TOKEN") or None,
        org_id=getattr(args, "org_id", "default") or "default",
        database_url=getattr(args, "database_url", None) or None,
        object_store_url=getattr(args, "object_store_url", None) or None,
    )
    try:
        yield sec
    finally:
        await sec.close()


def token_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "token", None) or os.environ.get("CONVERSE_TOKEN") or None


@dataclass(frozen=True, slots=True)
class Guarded:
    """What `cli_guard` allowed: who acts, whether a token decided, and the call when one was named."""

    principal: Principal
    by_token: bool
    call: CallInfo | None = None

    @property
    def org_scope(self) -> str | None:
        """The organisation a listing is limited to (None: the local custodian sees every organisation)."""
        return self.principal.org_id if self.by_token else None


async def caller(args: argparse.Namespace, sec: Security, action: str, resource: str) -> Guarded:
    """The CLI user: the token's principal (a failed authentication is audited and refused), else the
    local custodian."""
    token = token_of(args)
    if not token:
        return Guarded(local_operator(args.org_id), False)
    try:
        return Guarded(sec.authenticator.authenticate(f"Bearer {token}"), True)
    except IdentityError as exc:
        await sec.audit.append(
            actor_of(local_operator(args.org_id)), action, resource, "denied", details={"reason": str(exc)}
        )
        raise CommandError(f"denied: {exc}") from None


@asynccontextmanager
async def cli_guard(
    args: argparse.Namespace,
    rt: Runtime,
    permission: str,
    resource: str,
    *,
    call_id: str | None = None,
    **details: Any,
) -> AsyncIterator[Guarded]:
    """Authorise `permission` for the CLI user (on the call `call_id`, when given), audit the attempt, and
    audit failures of the action too."""
    perm = Permission(permission)
    action = f"cli.{perm.value}"
    async with security_for(args, rt) as sec:
        who = await caller(args, sec, action, resource)
        principal = who.principal
        basis = "token" if who.by_token else "local key custody"
        if who.by_token:
            decision = check(principal, perm)
            if not decision.allowed:
                await sec.audit.append(
                    actor_of(principal), action, resource, "denied", details={"reason": decision.reason}
                )
                raise CommandError(f"denied: {decision.reason}")
        if call_id is not None:
            info = await _find_call(rt, call_id)
            missing = f"no call {call_id}"
            if info is None:
                await sec.audit.append(
                    actor_of(principal),
                    action,
                    resource,
                    "denied",
                    details={"basis": basis, "reason": "no such call", "found": False, **details},
                )
                raise CommandError(missing)
            if who.by_token:
                decision = check(principal, perm, org_id=info.org_id)
                if not decision.allowed:  # another organisation's call: answered as a missing one
                    await sec.audit.append(
                        actor_of(principal), action, resource, "denied", details={"reason": decision.reason}
                    )
                    raise CommandError(missing)
            who = Guarded(principal, who.by_token, info)
        try:
            yield who
        except CommandError as exc:
            await sec.audit.append(
                actor_of(principal),
                action,
                resource,
                "error",
                details={"basis": basis, "error": str(exc), **details},
            )
            raise
        await sec.audit.append(
            actor_of(principal), action, resource, "allowed", details={"basis": basis, **details}
        )


async def _find_call(rt: Runtime, call_id: str) -> CallInfo | None:
    try:
        return await rt.stores.transcripts.get_call(call_id)
    except InvalidIdError as exc:
        raise CommandError(str(exc)) from None
    except NotFoundError:
        return None

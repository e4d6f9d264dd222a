"""Access check + audit entry around every CLI action that reads PHI or changes security state."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from worker.access import Permission, check
from worker.cli import CommandError
from worker.config import kek_path
from worker.identity import IdentityError
from worker.runtime import Runtime
from worker.security import Security, actor_of, local_operator, open_security


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


@asynccontextmanager
async def cli_guard(
    args: argparse.Namespace, rt: Runtime, permission: str, resource: str, **details: Any
) -> AsyncIterator[None]:
    """Authorise `permission` for the CLI user, audit the attempt, and audit failures of the action too."""
    perm = Permission(permission)
    async with security_for(args, rt) as sec:
        token = getattr(args, "token", None) or os.environ.get("CONVERSE_TOKEN")
        action = f"cli.{perm.value}"
        if token:
            try:
                principal = sec.authenticator.authenticate(f"Bearer {token}")
            except IdentityError as exc:
                await sec.audit.append(
                    actor_of(local_operator(args.org_id)),
                    action,
                    resource,
                    "denied",
                    details={"reason": str(exc)},
                )
                raise CommandError(f"denied: {exc}") from None
            decision = check(principal, perm)
            if not decision.allowed:
                await sec.audit.append(
                    actor_of(principal), action, resource, "denied", details={"reason": decision.reason}
                )
                raise CommandError(f"denied: {decision.reason}")
            basis = "token"
        else:
            principal = local_operator(args.org_id)
            basis = "local key custody"
        try:
            yield
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

"""Minimum-necessary access: permissions, roles, and the one table that maps them (HIPAA page, control 5).

Code checks permissions, never role names. `ROLE_PERMISSIONS` is the single source of truth; `docs/access.md`
shows it (`python -m worker.auth.access docs/access.md` rewrites the generated block, a test keeps
them equal).
Every permission in `PHI_PERMISSIONS` also needs "mfa" in the principal's `amr` (RFC 8176).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from worker import docsync


class Permission(StrEnum):
    CONFIGURE_SECURITY = "configure_security"  # PHI protection, E2EE, recording, retention period
    READ_SETTINGS = "read_settings"  # view the organisation's security settings
    CONFIGURE_AGENTS = "configure_agents"
    LIST_CALLS = "list_calls"  # every call of the organisation: list and detail (metadata, no text)
    READ_TRANSCRIPTS = "read_transcripts"  # stored (redacted) transcripts
    EXPORT_RECORDINGS = "export_recordings"  # decrypt and export sealed audio
    ESCALATE_CALL = "escalate_call"  # mark a call escalated
    LIST_ESCALATED = "list_escalated"  # the queue of escalated calls, nothing else
    CLAIM_ESCALATED = "claim_escalated"  # claim and release an escalated call
    LIVE_VIEW_CLAIMED = "live_view_claimed"  # live (unredacted, memory-only) view of the call one has claimed
    READ_ANALYTICS = "read_analytics"  # aggregates only: counts, durations, redactions by type
    READ_AUDIT = "read_audit"
    VERIFY_AUDIT = "verify_audit"  # run verify, write a checkpoint
    RUN_RETENTION = "run_retention"
    MANAGE_KEYS = "manage_keys"  # rotate the key-encryption key, the audit and token signing keys
    MANAGE_USERS = "manage_users"  # enrol users for TOTP, issue tokens for others


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    SUPPORT = "support"  # Customer Support Agent
    VIEWER = "viewer"


ROLE_TITLES: Final = {
    Role.OWNER: "Owner",
    Role.ADMIN: "Admin",
    Role.SUPPORT: "Customer Support Agent",
    Role.VIEWER: "Viewer",
}

P = Permission
_ADMIN: Final = frozenset(P) - {P.MANAGE_KEYS, P.MANAGE_USERS}

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.OWNER: frozenset(P),
    Role.ADMIN: _ADMIN,
    Role.SUPPORT: frozenset({P.LIST_ESCALATED, P.CLAIM_ESCALATED, P.LIVE_VIEW_CLAIMED}),
    Role.VIEWER: frozenset({P.READ_ANALYTICS}),
}

PHI_PERMISSIONS: Final = frozenset({P.READ_TRANSCRIPTS, P.EXPORT_RECORDINGS, P.LIVE_VIEW_CLAIMED})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `amr`: how they authenticated (RFC 8176: "otp", "mfa"; ours: "static")."""

    user_id: str
    email: str | None
    org_id: str
    role: Role
    amr: tuple[str, ...] = ()
    ip: str | None = None

    @property
    def has_mfa(self) -> bool:
        return "mfa" in self.amr


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


class AccessDeniedError(Exception):
    """`require` refused; the message is the decision's reason (ids and names only)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def check(principal: Principal, permission: Permission | str, *, org_id: str | None = None) -> Decision:
    """May `principal` use `permission` (on a resource of organisation `org_id`, when given)?"""
    try:
        perm = Permission(permission)
    except ValueError:
        return Decision(False, f"unknown permission {permission!s}")
    if perm not in ROLE_PERMISSIONS.get(principal.role, frozenset()):
        return Decision(False, f"role {principal.role} lacks {perm}")
    if perm in PHI_PERMISSIONS and not principal.has_mfa:
        return Decision(False, f"mfa required for {perm}")
    if org_id is not None and org_id != principal.org_id:
        return Decision(False, f"{perm} on organisation {org_id} denied to a member of {principal.org_id}")
    return Decision(True, f"role {principal.role} has {perm}")


def require(principal: Principal, permission: Permission | str, *, org_id: str | None = None) -> Decision:
    decision = check(principal, permission, org_id=org_id)
    if not decision.allowed:
        raise AccessDeniedError(decision)
    return decision


def render_markdown() -> str:
    """The role x permission table as Markdown (what docs/access.md shows between the markers)."""
    roles = list(Role)
    head = (
        "| permission | PHI (needs `mfa`) | " + " | ".join(f"{ROLE_TITLES[r]} (`{r}`)" for r in roles) + " |"
    )
    rule = "|---|:-:|" + ":-:|" * len(roles)
    lines = [head, rule]
    for perm in Permission:
        marks = " | ".join("yes" if perm in ROLE_PERMISSIONS[r] else "-" for r in roles)
        lines.append(f"| `{perm}` | {'yes' if perm in PHI_PERMISSIONS else '-'} | {marks} |")
    return "\n".join(lines) + "\n"


DOC: Final = docsync.Block("worker.auth.access", "docs/access.md", render_markdown)
BEGIN_MARK, END_MARK, sync_doc, main = DOC.begin, docsync.END_MARK, DOC.sync, DOC.main


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""worker.auth.access: the role x permission x mfa matrix, table-driven, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.auth import access
from worker.auth.access import (
    PHI_PERMISSIONS,
    AccessDeniedError,
    Decision,
    Permission,
    Principal,
    Role,
    check,
)

# The HIPAA page, written out by hand (a second entry of ROLE_PERMISSIONS, so a change to either is caught).
EXPECTED: dict[str, set[str]] = {
    "owner": {p.value for p in Permission},
    "admin": {p.value for p in Permission} - {"manage_keys", "manage_users"},
    "support": {"list_escalated", "claim_escalated", "live_view_claimed"},
    "viewer": {"read_analytics"},
}
PHI = {"read_transcripts", "export_recordings", "live_view_claimed"}


def principal(role: Role, mfa: bool) -> Principal:
    amr = ("otp", "mfa") if mfa else ("local",)
    return Principal("u1", "u1@example.org", "org1", role, amr, "127.0.0.1")


@pytest.mark.parametrize("mfa", [True, False], ids=["mfa", "no-mfa"])
@pytest.mark.parametrize("permission", list(Permission))
@pytest.mark.parametrize("role", list(Role))
def test_matrix(role: Role, permission: Permission, mfa: bool) -> None:
    decision = check(principal(role, mfa), permission)
    if permission.value not in EXPECTED[role.value]:
        assert decision == Decision(False, f"role {role.value} lacks {permission.value}")
    elif permission.value in PHI and not mfa:
        assert decision == Decision(False, f"mfa required for {permission.value}")
    else:
        assert decision == Decision(True, f"role {role.value} has {permission.value}")


def test_phi_permissions() -> None:
    assert {p.value for p in PHI_PERMISSIONS} == PHI


def test_support_reaches_no_stored_transcript_or_call_list() -> None:
    support = principal(Role.SUPPORT, mfa=True)
    for permission in ("read_transcripts", "export_recordings", "list_calls", "read_settings", "read_audit"):
        assert not check(support, permission).allowed


def test_static_token_principal_never_reads_phi() -> None:
    static = Principal("static-token", None, "default", Role.OWNER, ("static",))
    assert check(static, "configure_security").allowed
    assert check(static, "read_transcripts") == Decision(False, "mfa required for read_transcripts")


def test_string_permissions_and_unknown_ones() -> None:
    owner = principal(Role.OWNER, mfa=True)
    assert check(owner, "list_calls").allowed
    assert check(owner, "fly") == Decision(False, "unknown permission fly")


def test_organisation_scoping() -> None:
    admin = principal(Role.ADMIN, mfa=True)
    assert check(admin, "read_transcripts", org_id="org1").allowed
    assert check(admin, "read_transcripts", org_id="org2") == Decision(
        False, "read_transcripts on organisation org2 denied to a member of org1"
    )


def test_require_raises_with_reason() -> None:
    with pytest.raises(AccessDeniedError, match=r"^role viewer lacks list_calls$") as err:
        access.require(principal(Role.VIEWER, mfa=True), Permission.LIST_CALLS)
    assert err.value.decision.allowed is False
    assert access.require(principal(Role.VIEWER, mfa=False), "read_analytics").allowed


def test_docs_show_the_table() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "access.md").read_text("utf-8")
    assert access.sync_doc(doc) == doc
    assert access.render_markdown() in doc
    assert "| `read_transcripts` | yes | yes | yes | - | - |" in doc


def test_main_rewrites_the_block(tmp_path: Path) -> None:
    doc = tmp_path / "access.md"
    doc.write_text(f"intro\n{access.BEGIN_MARK}stale\n{access.END_MARK}outro\n")
    assert access.main([str(doc)]) == 0
    assert doc.read_text() == f"intro\n{access.BEGIN_MARK}{access.render_markdown()}{access.END_MARK}outro\n"

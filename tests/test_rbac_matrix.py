"""The full role x endpoint matrix of the admin API, table-driven from `worker.auth.access.ROLE_PERMISSIONS`.

For each role, with and without `mfa` in `amr`, every endpoint is called once, in an order that builds the
state later rows need (escalate -> claim -> live view -> release). Expected: the endpoint's success status
where `access.check` allows the permission, else 403 with the decision's reason; and each request leaves
exactly one decision entry `api.<permission>` with outcome allowed/denied and the caller's identity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import (
    ACTIVE_CALL,
    FOREIGN_CALL,
    ORG,
    OTHER_ORG,
    REDACTED_LINE,
    STORED_CALL,
    Api,
    open_api,
    opus_frames,
)
from worker.auth.access import Permission, Principal, Role, check
from worker.http.api import live as api_live

P = Permission


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    permission: Permission
    ok: int = 200
    body: Any = None


MATRIX: list[Row] = [
    Row("GET", "/v1/settings", P.READ_SETTINGS),
    Row("PUT", "/v1/settings", P.CONFIGURE_SECURITY, body={"retention_days": 90, "e2ee_required": True}),
    Row("GET", "/v1/calls", P.LIST_CALLS),
    Row("GET", f"/v1/calls/{STORED_CALL}", P.LIST_CALLS),
    Row("GET", f"/v1/calls/{STORED_CALL}/transcript", P.READ_TRANSCRIPTS),
    Row("GET", f"/v1/calls/{STORED_CALL}/tracks/0/recording", P.EXPORT_RECORDINGS),
    Row("GET", f"/v1/calls/{STORED_CALL}/tracks/0/recording?format=wav", P.EXPORT_RECORDINGS),
    Row("POST", f"/v1/calls/{ACTIVE_CALL}/escalate", P.ESCALATE_CALL, ok=201),
    Row("GET", "/v1/escalations", P.LIST_ESCALATED),
    Row("POST", f"/v1/calls/{ACTIVE_CALL}/claim", P.CLAIM_ESCALATED),
    Row("GET", f"/v1/calls/{ACTIVE_CALL}/live", P.LIVE_VIEW_CLAIMED),
    Row("POST", f"/v1/calls/{ACTIVE_CALL}/release", P.CLAIM_ESCALATED),
    Row(
        "POST",
        f"/v1/calls/{ACTIVE_CALL}/sframe-keys",
        P.CONFIGURE_SECURITY,
        body={"suite": 4, "keys": {"7": "AAECAwQFBgcICQoLDA0ODw"}},
    ),
    Row("GET", "/v1/analytics", P.READ_ANALYTICS),
    Row("GET", "/v1/audit?since=0&limit=5", P.READ_AUDIT),
    Row("GET", "/v1/audit/verify", P.VERIFY_AUDIT),
    Row("POST", "/v1/audit/checkpoint", P.VERIFY_AUDIT, ok=201),
    Row("GET", "/v1/audit/proof/1", P.READ_AUDIT),
    Row("POST", "/v1/keys/rotate", P.MANAGE_KEYS),
    Row("POST", "/v1/retention/run", P.RUN_RETENTION),
]

CASES = [(role, mfa) for role in Role for mfa in (True, False)]


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    return opus_frames(3.0)


@pytest.fixture
async def api(tmp_path: Path, packets: list[bytes], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setattr(api_live, "KEEPALIVE_S", 0.2)
    async with open_api(tmp_path, seed_packets=packets) as a:
        a.ctx.escalations.escalate(ACTIVE_CALL, "setup")  # so that claim has something to claim
        a.calls[ACTIVE_CALL].add_sframe_keys = lambda suite, keys: None  # type: ignore[method-assign]
        yield a


async def call(api: Api, row: Row, headers: dict[str, str]) -> tuple[int, str]:
    kwargs: dict[str, Any] = {"headers": headers}
    if row.body is not None:
        kwargs["json"] = row.body
    async with api.client.request(row.method, row.path, **kwargs) as resp:
        if resp.content_type == "text/event-stream":
            first = await resp.content.readline()  # the stream's opening comment; then hang up
            return resp.status, first.decode()
        return resp.status, (await resp.read()).decode("utf-8", "replace")


def expected_allowed(role: Role, mfa: bool, perm: Permission) -> bool:
    principal = Principal("u", None, ORG, role, ("otp", "mfa") if mfa else ("local",))
    return check(principal, perm).allowed


@pytest.mark.parametrize(("role", "mfa"), CASES, ids=[f"{r}-{'mfa' if m else 'nomfa'}" for r, m in CASES])
async def test_role_endpoint_matrix(api: Api, role: Role, mfa: bool) -> None:
    user = f"{role}-{int(mfa)}"
    headers = api.auth(role, mfa=mfa, user=user)
    problems: list[str] = []
    for row in MATRIX:
        since = await api.last_seq()
        status, text = await call(api, row, headers)
        allowed = expected_allowed(role, mfa, row.permission)
        want = row.ok if allowed else 403
        if status != want:
            problems.append(f"{row.method} {row.path}: {status} (want {want}) {text[:120]}")
            continue
        if not allowed:
            reason = check(
                Principal(user, None, ORG, role, ("otp", "mfa") if mfa else ()), row.permission
            ).reason
            if f'"error": "{reason}"' not in text:
                problems.append(f"{row.method} {row.path}: reason {text[:120]} (want {reason})")
        decisions = [e for e in await api.audit_tail(since) if e["action"] == f"api.{row.permission}"]
        if len(decisions) != 1:
            problems.append(f"{row.method} {row.path}: {len(decisions)} decision entries")
            continue
        entry = decisions[0]
        actor = entry["actor"]
        if entry["outcome"] != ("allowed" if allowed else "denied"):
            problems.append(f"{row.method} {row.path}: audited {entry['outcome']}")
        if (actor["user_id"], actor["role"], actor["org_id"], actor["ip"]) != (user, role, ORG, "127.0.0.1"):
            problems.append(f"{row.method} {row.path}: audited actor {actor}")
        if actor["email"] != f"{user}@example.org":
            problems.append(f"{row.method} {row.path}: audited email {actor['email']}")
    assert not problems, "\n".join(problems)


def test_matrix_covers_every_api_route() -> None:
    from tests.test_openapi import registered_v1_routes

    rows = {(r.method, r.path.split("?")[0]) for r in MATRIX}
    for method, template in registered_v1_routes():
        assert any(m == method and _matches(template, path) for m, path in rows), f"{method} {template}"


def _matches(template: str, path: str) -> bool:
    t_parts, p_parts = template.strip("/").split("/"), path.strip("/").split("/")
    return len(t_parts) == len(p_parts) and all(
        t == p or (t.startswith("{") and t.endswith("}")) for t, p in zip(t_parts, p_parts, strict=True)
    )


async def test_support_agent_reaches_no_stored_transcript_or_recording(api: Api) -> None:
    headers = api.auth(Role.SUPPORT, mfa=True, user="agent")
    async with api.client.post(f"/v1/calls/{ACTIVE_CALL}/claim", headers=headers) as resp:
        assert resp.status == 200
    phi_paths = [
        f"/v1/calls/{STORED_CALL}/transcript",
        f"/v1/calls/{STORED_CALL}/tracks/0/recording",
        f"/v1/calls/{STORED_CALL}/tracks/0/recording?format=wav",
        f"/v1/calls/{ACTIVE_CALL}/transcript",  # claimed, yet stored text stays out of reach
        f"/v1/calls/{ACTIVE_CALL}/tracks/0/recording",
        f"/v1/calls/{STORED_CALL}",
        "/v1/calls",
        "/v1/audit",
        "/v1/settings",
    ]
    for path in phi_paths:
        async with api.client.get(path, headers=headers) as resp:
            body = await resp.read()
            assert resp.status == 403, path
            assert REDACTED_LINE.encode() not in body and b"OggS" not in body and b"RIFF" not in body
    async with api.client.get("/v1/escalations", headers=headers) as resp:
        listed = await resp.json()
    assert listed == {
        "escalations": [
            {
                "call_id": ACTIVE_CALL,
                "state": "claimed",
                "claimed_by": "agent",
                "claimed_by_me": True,
                "active": True,
            }
        ]
    }
    denied = [
        e for e in await api.audit_tail(0) if e["actor"]["user_id"] == "agent" and e["outcome"] == "denied"
    ]
    assert len(denied) == len(phi_paths)
    resources = {e["resource"] for e in denied}
    assert {f"call/{STORED_CALL}/transcript", f"call/{STORED_CALL}/track/0/recording"} <= resources


async def test_viewer_sees_only_analytics(api: Api) -> None:
    headers = api.auth(Role.VIEWER, mfa=True)
    async with api.client.get("/v1/analytics", headers=headers) as resp:
        assert resp.status == 200
        body = await resp.text()
    for secret in (STORED_CALL, ACTIVE_CALL, FOREIGN_CALL, REDACTED_LINE, "[PHONE]", ORG):
        assert secret not in body
    assert (await api.client.get("/v1/calls", headers=headers)).status == 403
    assert (await api.client.get("/v1/escalations", headers=headers)).status == 403


@pytest.mark.parametrize("role", list(Role))
async def test_other_organisation_sees_none_of_this_one(api: Api, role: Role) -> None:
    """A token of org B: this org's calls are 404 (as if absent), pod-wide operations 403."""
    headers = api.auth(role, mfa=True, org=OTHER_ORG)
    for row in MATRIX:
        status, text = await call(api, row, headers)
        perm_ok = expected_allowed(role, True, row.permission)
        if not perm_ok:
            assert status == 403, (row.path, status, text)
        elif "/calls/" in row.path:
            assert status == 404 and ("no call" in text or "no active call" in text), (row.path, status, text)
        elif row.path.startswith(("/v1/audit", "/v1/keys", "/v1/retention")):
            assert status == 403 and "denied to a member of org-b" in text, (row.path, status, text)
        else:
            assert status == row.ok, (row.path, status, text)
            assert STORED_CALL not in text and ACTIVE_CALL not in text

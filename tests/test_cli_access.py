"""The CLI with a token answers as the admin API does (issue 19, item 1): organisation scoping of the PHI
reads, `manage_users` on `token enroll|issue`, and enrolments that are never silently replaced."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.cli_plant import plant_call
from tests.support import cli_env, json_lines, run_cli
from worker.auth.identity import LocalIssuer
from worker.auth.totp import code_at


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    data, kek = tmp_path / "data", tmp_path / "keys" / "kek.json"
    plant_call(data, kek, "callA", "orgA", text="orgA private words")
    plant_call(data, kek, "callB", "orgB", text="orgB words")
    return cli_env(data, kek)


def enrolled_token(env: dict[str, str], user: str, org: str, role: str) -> str:
    """A user enrolled (by the local custodian acting for `org`) and their mfa token from a fresh code."""
    out = run_cli(["token", "enroll", "--user", user, "--role", role, "--org-id", org, "--json"], env)
    secret = json.loads(out.stdout)["secret"]
    issued = run_cli(
        ["token", "issue", "--user", user, "--totp", code_at(secret, time.time()), "--json"], env
    )
    return str(json.loads(issued.stdout)["token"])


def audit_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    return json_lines(run_cli(["audit", "show", "--json", "--limit", "1000"], env).stdout)


def test_another_organisations_call_does_not_exist_for_a_token(env: dict[str, str], tmp_path: Path) -> None:
    tok = ["--token", enrolled_token(env, "owner-b", "orgB", "owner")]
    listed = json_lines(run_cli(["transcripts", "list", "--json", *tok], env).stdout)
    assert [c["call_id"] for c in listed] == ["callB"]
    assert "orgB words" in run_cli(["transcripts", "show", "callB", *tok], env).stdout

    missing = run_cli(["transcripts", "show", "nosuchcall", *tok], env, check=False)
    foreign = run_cli(["transcripts", "show", "callA", *tok], env, check=False)
    assert (missing.returncode, missing.stderr) == (1, "error: no call nosuchcall\n")
    assert (foreign.returncode, foreign.stderr) == (1, "error: no call callA\n")
    assert "orgA private words" not in foreign.stdout + foreign.stderr

    out = tmp_path / "a.wav"
    exp = run_cli(["export", "--call", "callA", "-o", str(out), *tok], env, check=False)
    exp_missing = run_cli(["export", "--call", "nosuchcall", "-o", str(out), *tok], env, check=False)
    assert (exp.returncode, exp.stderr) == (1, "error: no call callA\n")
    assert (exp_missing.returncode, exp_missing.stderr) == (1, "error: no call nosuchcall\n")
    assert not out.exists()

    rows = audit_rows(env)
    on_a = [r for r in rows if str(r["resource"]).startswith("call/callA/")]
    assert {(r["action"], r["outcome"]) for r in on_a} == {
        ("cli.read_transcripts", "denied"),
        ("cli.export_recordings", "denied"),
    }
    assert all("orgA denied to a member of orgB" in str(r["details"]) for r in on_a)
    on_missing = [r for r in rows if str(r["resource"]).startswith("call/nosuchcall/")]
    assert [(r["outcome"], r["details"]) for r in on_missing] == 2 * [
        ("denied", {"basis": "token", "found": False, "reason": "no such call"})
    ]


def test_the_local_custodian_still_reads_every_organisation(env: dict[str, str]) -> None:
    listed = json_lines(run_cli(["transcripts", "list", "--json"], env).stdout)
    assert sorted(c["call_id"] for c in listed) == ["callA", "callB"]
    assert "orgA private words" in run_cli(["transcripts", "show", "callA"], env).stdout


def test_token_issue_and_enroll_need_manage_users_in_that_organisation(env: dict[str, str]) -> None:
    # The local custodian acts for its own organisation (--org-id, "default") only.
    denied = run_cli(["token", "issue", "--user", "x", "--org", "orgB", "--role", "owner"], env, check=False)
    assert (denied.returncode, denied.stderr) == (
        1,
        "error: denied: manage_users on organisation orgB denied to a member of default\n",
    )
    denied = run_cli(["token", "enroll", "--user", "x", "--org", "orgB", "--role", "owner"], env, check=False)
    assert denied.returncode == 1 and "manage_users on organisation orgB" in denied.stderr

    admin = ["--token", enrolled_token(env, "admin-b", "orgB", "admin")]
    for cmd in (
        ["token", "issue", "--user", "y", "--role", "owner"],
        ["token", "enroll", "--user", "y", "--role", "owner"],
    ):
        proc = run_cli([*cmd, *admin], env, check=False)
        assert (proc.returncode, proc.stderr) == (1, "error: denied: role admin lacks manage_users\n")

    owner = ["--token", enrolled_token(env, "owner-b", "orgB", "owner")]
    proc = run_cli(
        ["token", "issue", "--user", "y", "--org", "orgA", "--role", "owner", *owner], env, check=False
    )
    assert proc.stderr == "error: denied: manage_users on organisation orgA denied to a member of orgB\n"
    viewer = run_cli(["token", "issue", "--user", "v", "--role", "viewer", "--json", *owner], env)
    listed = run_cli(["transcripts", "list", "--token", json.loads(viewer.stdout)["token"]], env, check=False)
    assert listed.stderr == "error: denied: role viewer lacks list_calls\n"

    outcomes = [(r["action"], r["outcome"]) for r in audit_rows(env) if r["action"] == "token.issue"]
    assert outcomes.count(("token.issue", "denied")) == 3 and ("token.issue", "ok") in outcomes


def test_an_enrolment_is_never_silently_replaced(env: dict[str, str]) -> None:
    enrolled_token(env, "u1", "orgB", "viewer")
    again = run_cli(
        ["token", "enroll", "--user", "u1", "--role", "owner", "--org-id", "orgB"], env, check=False
    )
    assert (again.returncode, again.stderr) == (
        1,
        "error: denied: user u1 is already enrolled for TOTP (re-enrol with --replace)\n",
    )
    # Another organisation's owner cannot take the user over, even with --replace.
    other = ["token", "enroll", "--user", "u1", "--role", "owner", "--org-id", "orgA", "--replace"]
    assert run_cli(other, env, check=False).returncode == 1
    replaced = ["token", "enroll", "--user", "u1", "--role", "admin", "--org-id", "orgB", "--replace"]
    secret = json.loads(run_cli([*replaced, "--json"], env).stdout)["secret"]
    # The token carries the enrolment's organisation and role; asking for others is refused.
    code = code_at(secret, time.time())
    bad = run_cli(["token", "issue", "--user", "u1", "--totp", code, "--role", "owner"], env, check=False)
    assert bad.stderr == "error: denied: --role does not match the enrolment of user u1\n"
    bad = run_cli(["token", "issue", "--user", "u1", "--totp", code, "--org", "orgA"], env, check=False)
    assert bad.stderr == "error: denied: --org does not match the enrolment of user u1\n"
    issued = run_cli(["token", "issue", "--user", "u1", "--totp", code, "--json"], env)
    tok = json.loads(issued.stdout)["token"]
    listed = json_lines(run_cli(["transcripts", "list", "--json", "--token", tok], env).stdout)
    assert [c["call_id"] for c in listed] == ["callB"]
    entries = [r for r in audit_rows(env) if r["action"] == "user.totp_enrolled"]
    assert [(r["outcome"], dict(r["details"] or {}).get("replaced")) for r in entries] == [
        ("ok", False),
        ("denied", None),
        ("denied", None),
        ("ok", True),
    ]


def test_a_ten_year_token_signed_by_the_issuer_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path / "keys" / "issuer.key")  # the key the CLI's embedded issuer signs with
    now = int(time.time())
    claims = {"iss": "converse-local", "aud": "converse-worker", "sub": "u1", "org_id": "orgB",
              "role": "owner", "amr": ["otp", "mfa"], "iat": now, "nbf": now,
              "exp": now + 10 * 365 * 86400}  # fmt: skip
    token = jwt.encode(claims, issuer.key, algorithm="EdDSA", headers={"kid": issuer.key_id})
    proc = run_cli(["transcripts", "show", "callB", "--token", token], env, check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: denied: token lifetime exceeds 3600 seconds\n")
    assert "orgB words" not in proc.stdout

"""Admin API behaviour: settings audit, org scoping, the live view over a real engine call, recording
export and integrity, authentication errors, SFrame keys, escalation rules, analytics, fail-closed audit."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from media.frames import FRAME_SAMPLES, EncodedFrame
from storage.protocols import CallInfo
from tests.api_support import (
    ACTIVE_CALL,
    FOREIGN_CALL,
    ORG,
    OTHER_ORG,
    PHI_LINE,
    REDACTED_LINE,
    STORED_CALL,
    Api,
    open_api,
    opus_frames,
)
from worker.auth.access import Role
from worker.calls.analytics import aggregate
from worker.http.api import live as api_live


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    return opus_frames()


@pytest.fixture
async def api(tmp_path: Path, packets: list[bytes], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setattr(api_live, "KEEPALIVE_S", 0.2)
    async with open_api(tmp_path, seed_packets=packets[:150]) as a:
        yield a


async def entries(api: Api, action: str) -> list[dict[str, Any]]:
    return [e for e in await api.audit_tail(0) if e["action"] == action]


# -- settings ------------------------------------------------------------------------------------------------


async def test_settings_put_is_audited_with_before_and_after(api: Api) -> None:
    h = api.auth(Role.ADMIN, mfa=False)
    resp = await api.client.put(
        "/v1/settings", json={"retention_days": 30, "phi_protection": False}, headers=h
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["retention_days"], body["phi_protection"], body["org_id"]) == (30, False, ORG)
    assert (await (await api.client.get("/v1/settings", headers=h)).json())["retention_days"] == 30
    (entry,) = await entries(api, "api.configure_security")
    assert entry["outcome"] == "allowed" and entry["resource"] == "settings"
    assert entry["before"] == {
        "phi_protection": True,
        "e2ee_required": False,
        "recording_enabled": True,
        "retention_days": None,
    }
    assert entry["after"] == {
        "phi_protection": False,
        "e2ee_required": False,
        "recording_enabled": True,
        "retention_days": 30,
    }
    assert entry["actor"]["email"] == "admin-user@example.org" and entry["actor"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"retention_days": 0}, 400, "retention_days must be null or an integer from 1 to 36500"),
        ({"retention_days": True}, 400, "retention_days must be null"),
        ({"phi_protection": "no"}, 400, "phi_protection must be true or false"),
        ({"colour": "red"}, 400, "unknown setting 'colour'"),
        ({}, 400, "no setting given"),
        ([1, 2], 400, "request body must be a JSON object"),
    ],
)
async def test_settings_put_rejects_bad_bodies(api: Api, body: Any, status: int, message: str) -> None:
    resp = await api.client.put("/v1/settings", json=body, headers=api.auth(Role.OWNER))
    assert resp.status == status
    assert message in (await resp.json())["error"]
    assert (await api.ctx.stores.transcripts.get_settings(ORG)).updated_at is None  # nothing stored


async def test_body_type_and_size_limits(api: Api) -> None:
    h = api.auth(Role.OWNER)
    resp = await api.client.put("/v1/settings", data="retention_days=3", headers=h)
    assert resp.status == 415 and (await resp.json()) == {"error": "request body must be application/json"}
    big = json.dumps({"retention_days": 3, "pad": "x" * 70_000})
    resp = await api.client.put("/v1/settings", data=big, headers={**h, "Content-Type": "application/json"})
    assert resp.status == 413
    resp = await api.client.put("/v1/settings", data="{", headers={**h, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json()) == {"error": "request body is not valid JSON"}


async def test_a_viewer_with_a_bad_body_is_refused_for_the_role_first(api: Api) -> None:
    resp = await api.client.put("/v1/settings", data="x", headers=api.auth(Role.VIEWER))
    assert resp.status == 403
    assert (await resp.json()) == {"error": "role viewer lacks configure_security"}


# -- organisation scoping ------------------------------------------------------------------------------------


async def test_calls_are_scoped_to_the_callers_organisation(api: Api) -> None:
    mine = await (await api.client.get("/v1/calls", headers=api.auth(Role.OWNER))).json()
    assert {c["call_id"] for c in mine["calls"]} == {STORED_CALL, ACTIVE_CALL}
    theirs = await (await api.client.get("/v1/calls", headers=api.auth(Role.OWNER, org=OTHER_ORG))).json()
    assert [c["call_id"] for c in theirs["calls"]] == [FOREIGN_CALL]
    for path in (f"/v1/calls/{FOREIGN_CALL}", f"/v1/calls/{FOREIGN_CALL}/transcript", "/v1/calls/nosuchcall"):
        resp = await api.client.get(path, headers=api.auth(Role.OWNER))
        assert resp.status == 404
        assert (await resp.json())["error"] == f"no call {path.split('/')[3]}"  # same answer: no probing
    (denied,) = [e for e in await entries(api, "api.list_calls") if e["outcome"] == "denied"]
    assert denied["resource"] == f"call/{FOREIGN_CALL}"
    assert denied["details"]["reason"] == "list_calls on organisation org-b denied to a member of org-a"


async def test_call_detail_has_counts_and_no_text(api: Api) -> None:
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}", headers=api.auth(Role.ADMIN, mfa=False))
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "ended"
    (track,) = body["tracks"]
    assert track["frames_received"] == track["frames_sealed"] == 150 and track["frames_lost"] == 0
    assert body["redactions"]["PHONE"] >= 2 and body["utterances"] >= 2
    assert "[PHONE]" not in json.dumps(body) and "appointment" not in json.dumps(body)


async def test_invalid_ids_are_refused_and_audited(api: Api) -> None:
    h = api.auth(Role.OWNER)
    for path in (
        "/v1/calls/a.b",
        "/v1/calls/" + "x" * 65,
        f"/v1/calls/{STORED_CALL}/tracks/99999/recording",
        f"/v1/calls/{STORED_CALL}/tracks/-1/recording",
        "/v1/audit/proof/0",
        "/v1/audit?limit=0",
    ):
        resp = await api.client.get(path, headers=h)
        assert resp.status == 400, path
        assert set(await resp.json()) == {"error"}
    fallback = await entries(api, "api.request")
    assert fallback and all(e["outcome"] == "error" and e["details"]["status"] == 400 for e in fallback)


# -- transcripts and recordings ------------------------------------------------------------------------------


async def test_transcript_is_the_stored_redacted_text(api: Api) -> None:
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/transcript", headers=api.auth(Role.OWNER))
    body = await resp.json()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert body["utterances"] and all(u["text"] == REDACTED_LINE for u in body["utterances"])
    assert set(body["utterances"][0]) == {"track", "start", "end", "text", "committed_at"}
    (entry,) = await entries(api, "api.read_transcripts")
    assert entry["resource"] == f"call/{STORED_CALL}/transcript" and entry["outcome"] == "allowed"


async def test_export_returns_a_playable_ogg_and_a_wav(api: Api) -> None:
    h = api.auth(Role.OWNER)
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/0/recording", headers=h)
    data = await resp.read()
    assert resp.status == 200 and resp.content_type == "audio/ogg" and data[:4] == b"OggS"
    assert resp.headers["Converse-Recording-Complete"] == "true"
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        decoded: int = sum(int(frame.samples) for frame in container.decode(stream))
    assert abs(decoded - 150 * FRAME_SAMPLES) <= FRAME_SAMPLES  # pre-skip aside, every frame is there

    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/0/recording?format=wav", headers=h)
    data = await resp.read()
    assert resp.status == 200 and resp.content_type == "audio/wav"
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 48000)
        assert len(w.readframes(10**7)) == 150 * FRAME_SAMPLES * 2

    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/0/recording?format=mp3", headers=h)
    assert resp.status == 400
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/5/recording", headers=h)
    assert resp.status == 404


async def test_export_after_key_rotation(api: Api) -> None:
    h = api.auth(Role.OWNER)
    rotated = await (await api.client.post("/v1/keys/rotate", headers=h)).json()
    assert rotated["version"] == 2 and rotated["rewrapped"] >= 1
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/0/recording", headers=h)
    assert resp.status == 200
    (done,) = await entries(api, "keys.rotated")
    assert done["before"]["version"] == 1 and done["after"]["version"] == 2


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_integrity_errors_answer_409(api: Api, damage: str) -> None:
    obj = api.stores.recordings.objects[(STORED_CALL, 0)]  # type: ignore[attr-defined]
    if damage == "flip":
        obj[len(obj) // 2] ^= 0x01
    else:
        del obj[len(obj) - 300 :]
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/tracks/0/recording", headers=api.auth(Role.OWNER))
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error.startswith(f"call {STORED_CALL} track 0: ") and "\n" not in error
    assert ("record" in error) and (damage != "truncate" or "truncated" in error)


# -- authentication ------------------------------------------------------------------------------------------


async def test_401_never_echoes_the_token_and_is_audited(api: Api) -> None:
    good = api.token(Role.OWNER)
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    other_issuer = api.issuer.issue("u", None, ORG, Role.OWNER, ["mfa"]).split(".")
    cases = {
        "Bearer " + forged: "token signature invalid",
        "Bearer not-a-jwt-secret-value-123": "token invalid",
        "Basic dXNlcjpwYXNz": "authorization must be a bearer token",
        "Bearer " + ".".join(other_issuer[:2]) + ".": "token signature invalid",
    }
    for header, message in cases.items():
        resp = await api.client.get("/v1/settings", headers={"Authorization": header})
        text = await resp.text()
        assert resp.status == 401 and json.loads(text) == {"error": message}, (header, text)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert header.split(" ", 1)[1] not in text
    resp = await api.client.get("/v1/calls")
    assert resp.status == 401 and (await resp.json()) == {"error": "missing bearer token"}
    failed = await entries(api, "api.authenticate")
    assert len(failed) == len(cases) + 1 and all(e["outcome"] == "denied" for e in failed)
    assert all(e["actor"]["user_id"] == "anonymous" and e["actor"]["ip"] == "127.0.0.1" for e in failed)
    audit_db = (api.ctx.security.audit.db_path).read_bytes()
    assert forged.encode() not in audit_db and b"not-a-jwt-secret" not in audit_db


async def test_expired_token(api: Api) -> None:
    issuer = api.issuer
    clock = issuer._clock
    issuer._clock = lambda: clock() - 7200  # issued two hours ago, 15 minutes of life
    try:
        old = api.token(Role.OWNER)
    finally:
        issuer._clock = clock
    resp = await api.client.get("/v1/settings", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401 and (await resp.json()) == {"error": "token expired"}


# -- audit ---------------------------------------------------------------------------------------------------


async def test_audit_read_verify_checkpoint_and_proof(api: Api) -> None:
    h = api.auth(Role.OWNER, mfa=False)
    await api.client.get("/v1/settings", headers=h)
    page = await (await api.client.get("/v1/audit?since=0&limit=2", headers=h)).json()
    assert [e["seq"] for e in page["entries"]] == [1, 2] and page["next_since"] == 2
    assert (await (await api.client.get("/v1/audit/verify", headers=h)).json()) == {
        "ok": True,
        "findings": [],
    }
    resp = await api.client.post("/v1/audit/checkpoint", headers=h)
    assert resp.status == 201 and (await resp.json())["tree_size"] >= 3
    proof = await (await api.client.get("/v1/audit/proof/2", headers=h)).json()
    assert proof["verified"] is True and proof["checkpoint"] == 1
    resp = await api.client.get("/v1/audit/proof/99999", headers=h)
    assert resp.status == 404 and (await resp.json()) == {"error": "no audit entry 99999"}


async def test_audit_failure_fails_closed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(api.ctx.security.audit, "append", broken)
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/transcript", headers=api.auth(Role.OWNER))
    text = await resp.text()
    assert resp.status == 503 and json.loads(text) == {"error": "audit log unavailable"}
    assert "PHONE" not in text


# -- escalation and the live view ----------------------------------------------------------------------------


async def test_escalation_rules(api: Api) -> None:
    admin, agent, other = (
        api.auth(Role.ADMIN),
        api.auth(Role.SUPPORT, user="agent"),
        api.auth(Role.SUPPORT, user="agent2"),
    )
    resp = await api.client.post(f"/v1/calls/{STORED_CALL}/escalate", headers=admin)
    assert resp.status == 409 and (await resp.json()) == {"error": f"call {STORED_CALL} is not active"}
    resp = await api.client.post(f"/v1/calls/{ACTIVE_CALL}/claim", headers=agent)
    assert resp.status == 404  # not escalated yet
    assert (await api.client.post(f"/v1/calls/{ACTIVE_CALL}/escalate", headers=admin)).status == 201
    assert (await api.client.post(f"/v1/calls/{ACTIVE_CALL}/claim", headers=agent)).status == 200
    resp = await api.client.post(f"/v1/calls/{ACTIVE_CALL}/claim", headers=other)
    assert resp.status == 409 and "claimed by another agent" in (await resp.json())["error"]
    resp = await api.client.post(f"/v1/calls/{ACTIVE_CALL}/release", headers=other)
    assert resp.status == 409
    listed = await (await api.client.get("/v1/escalations", headers=other)).json()
    assert listed["escalations"][0]["state"] == "claimed" and not listed["escalations"][0]["claimed_by_me"]
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=other)
    assert resp.status == 403
    assert (await resp.json()) == {"error": f"live view of call {ACTIVE_CALL} requires holding its claim"}
    await api.calls[ACTIVE_CALL].finish("ended", "done")
    listed = await (await api.client.get("/v1/escalations", headers=other)).json()
    assert listed == {"escalations": []}  # ended calls leave the queue


async def read_events(resp: Any, until: str, limit_s: float = 60.0) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""

    async def pump() -> None:
        nonlocal kind
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == until:
                    return

    await asyncio.wait_for(pump(), limit_s)
    return events


async def feed(api: Api, call_id: str, packets: list[bytes]) -> None:
    call = api.ctx.engine.get_call(call_id)
    assert call is not None
    track = await call.open_track()
    for i, payload in enumerate(packets):
        await track.push(EncodedFrame(payload=payload, timestamp=i * FRAME_SAMPLES))
    await call.finish("ended", "fixture complete")


async def test_live_view_streams_unredacted_finals_of_a_real_call(api: Api, packets: list[bytes]) -> None:
    """Owner/Admin (who may read transcripts) watch without a claim; the text is unredacted, memory-only."""
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=api.auth(Role.ADMIN))
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    feeder = asyncio.create_task(feed(api, ACTIVE_CALL, packets))
    events = await read_events(resp, "ended")
    await feeder
    finals = [data for kind, data in events if kind == "final"]
    assert finals and all(d["text"] == PHI_LINE and d["track"] == 0 and d["end"] > d["start"] for d in finals)
    assert events[-1] == ("ended", {"call_id": ACTIVE_CALL, "reason": "call ended"})
    stored = await api.stores.transcripts.get_utterances(ACTIVE_CALL)
    assert stored and all(u.text == REDACTED_LINE for u in stored)
    (start,) = await entries(api, "api.live_view_claimed")
    assert start["outcome"] == "allowed" and start["resource"] == f"call/{ACTIVE_CALL}/live"
    assert start["details"]["via"] == "read_transcripts"
    audit_db = api.ctx.security.audit.db_path.read_bytes()
    assert b"555" not in audit_db and b"appointment" not in audit_db


async def test_live_view_for_a_support_agent_follows_the_claim(api: Api) -> None:
    api.ctx.escalations.escalate(ACTIVE_CALL, "admin-user")
    agent = api.auth(Role.SUPPORT, user="agent")
    assert (await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=agent)).status == 403
    no_mfa = api.auth(Role.SUPPORT, user="agent", mfa=False)
    assert (await api.client.post(f"/v1/calls/{ACTIVE_CALL}/claim", headers=agent)).status == 200
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=no_mfa)
    assert resp.status == 403 and (await resp.json()) == {"error": "mfa required for live_view_claimed"}
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=agent)
    assert resp.status == 200
    assert (await api.client.post(f"/v1/calls/{ACTIVE_CALL}/release", headers=agent)).status == 200
    events = await read_events(resp, "ended", limit_s=10)
    assert events[-1] == ("ended", {"call_id": ACTIVE_CALL, "reason": "claim released"})
    outcomes = [(e["outcome"], e["details"]["reason"]) for e in await entries(api, "api.live_view_claimed")]
    assert outcomes == [
        ("denied", f"live view of call {ACTIVE_CALL} requires holding its claim"),
        ("denied", "mfa required for live_view_claimed"),
        ("allowed", "role support has live_view_claimed"),
    ]


async def test_live_view_ends_at_its_token_expiry(api: Api) -> None:
    """A stream opened with a short-lived token stops at `exp` although the call goes on."""
    token = api.issuer.issue("admin-user", "admin@example.org", ORG, Role.ADMIN, ["otp", "mfa"], ttl_s=2)
    opened = time.monotonic()
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    events = await read_events(resp, "ended", limit_s=8)
    elapsed = time.monotonic() - opened
    assert events[-1] == ("ended", {"call_id": ACTIVE_CALL, "reason": "token expired"})
    assert 0.5 < elapsed < 4.0, elapsed
    assert api.ctx.engine.get_call(ACTIVE_CALL) is not None  # the call itself is still running


async def test_live_viewers_are_capped_per_user(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_live, "LIVE_MAX_PER_USER", 1)
    first = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=api.auth(Role.ADMIN))
    assert first.status == 200
    again = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=api.auth(Role.ADMIN))
    assert again.status == 503 and again.headers["Retry-After"] == "10"
    assert (await again.json()) == {"error": "too many live views open by this user (at most 1)"}
    other = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=api.auth(Role.OWNER))
    assert other.status == 200  # another user of the organisation still gets a slot
    first.close()
    other.close()


def test_viewer_slots_are_per_organisation_and_user() -> None:
    slots = api_live.ViewerSlots()
    for i in range(api_live.LIVE_MAX_PER_ORG):
        assert slots.admit("org-a", f"user-{i}") is None
    assert slots.admit("org-a", "one-more") == (
        f"too many live viewers in organisation org-a (at most {api_live.LIVE_MAX_PER_ORG})"
    )
    assert slots.admit("org-b", "user-0") is None  # org A's views do not take org B's slots
    for i in range(api_live.LIVE_MAX_PER_ORG):
        slots.leave("org-a", f"user-{i}")
    slots.leave("org-b", "user-0")
    assert slots.count == 0 and not slots.by_org and not slots.by_user


async def test_live_view_of_an_ended_or_foreign_call_is_404(api: Api) -> None:
    h = api.auth(Role.OWNER)
    resp = await api.client.get(f"/v1/calls/{STORED_CALL}/live", headers=h)
    assert resp.status == 404 and (await resp.json()) == {"error": f"no active call {STORED_CALL}"}
    resp = await api.client.get(f"/v1/calls/{ACTIVE_CALL}/live", headers=api.auth(Role.OWNER, org=OTHER_ORG))
    assert resp.status == 404 and (await resp.json()) == {"error": f"no active call {ACTIVE_CALL}"}


# -- SFrame keys ---------------------------------------------------------------------------------------------


async def test_sframe_keys_reach_the_call_and_never_the_audit_log(api: Api) -> None:
    got: list[tuple[int, dict[int, bytes]]] = []
    api.calls[ACTIVE_CALL].add_sframe_keys = lambda suite, keys: got.append((suite, dict(keys)))  # type: ignore[method-assign]
    key_b64 = "c2VjcmV0LWtleS0xNi1ieXRlcyE"  # base64url, no padding: b"secret-key-16-bytes!"
    body = {"suite": 4, "keys": {"9": key_b64}}
    resp = await api.client.post(
        f"/v1/calls/{ACTIVE_CALL}/sframe-keys", json=body, headers=api.auth(Role.OWNER)
    )
    assert resp.status == 200 and (await resp.json()) == {"call_id": ACTIVE_CALL, "suite": 4, "kids": [9]}
    assert got == [(4, {9: b"secret-key-16-bytes!"})]
    (entry,) = await entries(api, "api.configure_security")
    assert entry["details"]["kids"] == [9] and entry["details"]["suite"] == 4
    audit_db = api.ctx.security.audit.db_path.read_bytes()
    assert key_b64.encode() not in audit_db and b"secret-key" not in audit_db


async def test_sframe_keys_refusals(api: Api) -> None:
    h = api.auth(Role.OWNER)
    url = f"/v1/calls/{ACTIVE_CALL}/sframe-keys"
    for body, message in [
        ({"suite": 9, "keys": {"1": "AAECAwQFBgcICQoLDA0ODw"}}, "suite must be an RFC 9605 cipher suite"),
        ({"keys": {}}, "keys must be an object"),
        ({"keys": {"x": "AAECAwQFBgcICQoLDA0ODw"}}, "kid must be an integer"),
        ({"keys": {"1": "AAEC"}}, "key must be 16-64 bytes"),
        ({"keys": {"1": "!!!"}}, "key must be base64url"),
    ]:
        resp = await api.client.post(url, json=body, headers=h)
        assert resp.status == 400 and message in (await resp.json())["error"], body
    # The real engine call is not end-to-end encrypted: it refuses, naming no key.
    resp = await api.client.post(url, json={"keys": {"1": "AAECAwQFBgcICQoLDA0ODw"}}, headers=h)
    assert resp.status == 400
    assert (await resp.json()) == {"error": f"keys refused: call {ACTIVE_CALL} is not end-to-end encrypted"}
    resp = await api.client.post(
        f"/v1/calls/{STORED_CALL}/sframe-keys", json={"keys": {"1": "AAECAwQFBgcICQoLDA0ODw"}}, headers=h
    )
    assert resp.status == 404


# -- analytics -----------------------------------------------------------------------------------------------


async def test_analytics_are_aggregates_only(api: Api) -> None:
    body = await (await api.client.get("/v1/analytics", headers=api.auth(Role.VIEWER, mfa=False))).json()
    assert body["calls"] == 2 and body["calls_by_status"] == {"active": 1, "ended": 1}
    assert body["redactions_by_type"]["PHONE"] == body["utterances"] >= 2
    assert body["calls_with_duration"] == 1 and body["average_duration_s"] == body["total_duration_s"]
    text = json.dumps(body)
    assert STORED_CALL not in text and ACTIVE_CALL not in text and "[PHONE]" not in text


def test_aggregate_core() -> None:
    from storage.protocols import UtteranceRecord

    calls = [
        CallInfo("a", ORG, "whip", "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z", "ended"),
        CallInfo("b", ORG, "whip", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:30.000Z", "failed"),
        CallInfo("c", ORG, "whip", "2026-01-01T00:00:00.000Z"),
    ]
    utts = [
        UtteranceRecord("a", 0, 0, 0.0, 1.0, "x", "2026-01-01T00:00:01.000Z", {"PHONE": 2, "[EMAIL]": 1}),
        UtteranceRecord("b", 0, 0, 0.0, 1.0, "y", "2026-01-01T00:00:01.000Z", {"EMAIL": 1}),
    ]
    result = aggregate(calls, utts).to_json()
    assert result == {
        "calls": 3,
        "calls_by_status": {"active": 1, "ended": 1, "failed": 1},
        "calls_with_duration": 2,
        "total_duration_s": 90.0,
        "average_duration_s": 45.0,
        "utterances": 2,
        "redactions_by_type": {"EMAIL": 2, "PHONE": 2},
    }


async def test_caller_chosen_placeholder_names_never_reach_analytics_metrics_or_the_column(api: Api) -> None:
    """A name stored before names were fixed (or any unexpected one) counts as VARIABLE everywhere."""
    from storage.protocols import UtteranceRecord

    phi_name = "CALLBACK 555-123-4567 JANE.DOE@EXAMPLE.COM"
    utts = [UtteranceRecord("a", 0, 0, 0.0, 1.0, "x", "2026-01-01T00:00:01.000Z", {phi_name: 2, "NAME": 1})]
    assert aggregate([], utts).redactions_by_type == {"NAME": 1, "VARIABLE": 2}
    api.ctx.metrics.redactions.labels(phi_name).inc()
    from prometheus_client import generate_latest

    exposed = generate_latest(api.ctx.metrics.registry).decode()
    assert 'converse_redactions_total{type="VARIABLE"} 1.0' in exposed
    # Names, labels and help text only: a sample value (a `_created` timestamp) may hold any digits.
    described = [line if line.startswith("#") else line.rpartition(" ")[0] for line in exposed.splitlines()]
    assert not [line for line in described if "555" in line or "JANE" in line.upper()]
    viewer = await api.client.get("/v1/analytics", headers=api.auth(Role.VIEWER, mfa=False))
    assert "555" not in await viewer.text()


def test_stores_keep_placeholder_names_from_the_fixed_set(tmp_path: Path) -> None:
    import sqlite3

    from storage.protocols import UtteranceRecord
    from storage.sql.sqlite import LocalTranscriptStore

    async def run() -> None:
        store = LocalTranscriptStore(tmp_path / "t.db")
        await store.create_call(CallInfo("a", ORG, "whip", "2026-01-01T00:00:00.000Z"))
        rec = UtteranceRecord("a", 0, 0, 0.0, 1.0, "x", "2026-01-01T00:00:01.000Z", {"callback 555 jane": 1})
        await store.append_utterance(rec)
        await store.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "t.db") as conn:
        (raw,) = conn.execute("SELECT redactions FROM utterances").fetchone()
    assert raw == '{"VARIABLE":1}'


async def test_retention_run_is_audited(api: Api) -> None:
    h = api.auth(Role.OWNER)
    await api.client.put("/v1/settings", json={"retention_days": 1}, headers=h)
    await api.stores.transcripts.create_call(
        CallInfo("old-call", ORG, "whip", "2020-01-01T00:00:00.000Z", "2020-01-01T00:05:00.000Z", "ended")
    )
    resp = await api.client.post("/v1/retention/run", headers=h)
    body = await resp.json()
    assert resp.status == 200 and body["deleted_calls"] == 1 and body["failed"] == 0
    assert (await api.client.get("/v1/calls/old-call", headers=h)).status == 404
    (run,) = await entries(api, "retention.run")
    assert run["details"]["deleted_calls"] == 1
    assert [e["resource"] for e in await entries(api, "retention.call_deleted")] == ["call:old-call"]


async def test_a_storage_outage_answers_503_without_details(api: Api) -> None:
    from storage.errors import StorageError

    api.stores.transcripts.fail_next(1, StorageError("database /secret/path unreachable"))  # type: ignore[attr-defined]
    resp = await api.client.get("/v1/calls", headers=api.auth(Role.OWNER))
    assert resp.status == 503 and (await resp.json()) == {"error": "storage unavailable"}

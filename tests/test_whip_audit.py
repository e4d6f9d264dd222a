"""A real `serve`: every WHIP attempt is audited (denied ones too, as on `/v1`), and every call's start and
end names its call id."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.serve_util import serve, start_call
from tests.support import FIXTURES, json_lines, run_cli


def _status(url: str, method: str, headers: dict[str, str], body: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def _entries(env: dict[str, str]) -> list[dict[str, Any]]:
    return json_lines(run_cli(["audit", "show", "--json", "--limit", "1000"], env).stdout)


def test_denied_whip_attempts_and_call_start_end_are_audited(tmp_path: Path) -> None:
    sdp = {"Content-Type": "application/sdp"}
    with serve(tmp_path) as srv:
        assert _status(srv.url + "/whip", "POST", sdp, b"v=0") == 401
        bad = {**sdp, "Authorization": "Bearer wrong-token-wrong-token"}
        assert _status(srv.url + "/whip", "POST", bad, b"v=0") == 401
        assert _status(srv.url + "/whip/some-call-id", "DELETE", {}) == 401
        assert _status(srv.url + "/whip/bad%E2%80%A6id", "DELETE", bad) == 401
        proc = start_call(srv, FIXTURES / "silence.wav", "--tail", "0.2")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        call_id = json.loads(out.strip().splitlines()[-1])["call_id"]
    entries = _entries(srv.env)
    whip = [e for e in entries if e["action"].startswith("whip.")]
    denied = [(e["action"], e["resource"], e["actor"]["user_id"]) for e in whip if e["outcome"] == "denied"]
    assert denied == [
        ("whip.authenticate", "whip", "anonymous"),
        ("whip.authenticate", "whip", "anonymous"),
        ("whip.authenticate", "call/some-call-id", "anonymous"),
        ("whip.authenticate", "call/-", "anonymous"),
    ]
    assert all(e["actor"].get("ip") == "127.0.0.1" for e in whip if e["outcome"] == "denied")
    mine = [(e["action"], e["outcome"]) for e in entries if e["resource"] == f"call/{call_id}"]
    assert ("call.start", "ok") in mine and ("call.end", "ok") in mine
    assert mine.index(("call.start", "ok")) < mine.index(("call.end", "ok"))
    assert ("whip.delete", "allowed") in mine  # the client's DELETE names the call it ends
    assert run_cli(["audit", "verify", "--json"], srv.env, check=False).returncode == 0


async def test_delete_of_another_organisations_call_is_denied_in_the_audit_and_404(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tests.api_support import ORG, OTHER_ORG, open_api
    from worker.auth.access import Role
    from worker.http.app import build_app
    from worker.webrtc.peer import Calls, WebRtcConfig

    async with open_api(tmp_path) as api:
        foreign = await api.ctx.engine.start_call(org_id=OTHER_ORG, source="whip", call_id="foreign-live")
        async with Calls(api.ctx.engine, WebRtcConfig(loopback_only=True)) as calls:
            async with TestClient(TestServer(build_app(api.ctx, calls))) as client:
                resp = await client.delete("/whip/foreign-live", headers=api.auth(Role.ADMIN, org=ORG))
                assert resp.status == 404 and await resp.text() == "unknown call\n"
        await foreign.finish("ended", "test over")
        entries = [e for e in await api.audit_tail(0) if e["action"] == "whip.delete"]
    assert [(e["resource"], e["outcome"], e["details"]) for e in entries] == [
        ("call/foreign-live", "denied", {"reason": "call of another organisation"})
    ]


async def test_whip_fails_closed_when_the_audit_log_is_down(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tests.api_support import open_api
    from worker.auth.access import Role
    from worker.http.app import build_app
    from worker.webrtc.peer import Calls, WebRtcConfig

    async with open_api(tmp_path) as api:

        async def broken(*args: Any, **kw: Any) -> int:
            raise OSError("disk full")

        api.ctx.security.audit.append = broken  # type: ignore[method-assign]  # an outage, for this test
        async with Calls(api.ctx.engine, WebRtcConfig(loopback_only=True)) as calls:
            async with TestClient(TestServer(build_app(api.ctx, calls))) as client:
                sdp = {"Content-Type": "application/sdp"}
                for headers in ({**sdp, **api.auth(Role.ADMIN)}, {**sdp, "Authorization": "Bearer nope"}):
                    resp = await client.post("/whip", data=b"v=0", headers=headers)
                    assert resp.status == 503 and await resp.text() == "audit log unavailable\n"
                    assert resp.headers["Retry-After"] == "10"
            assert len(calls) == 0

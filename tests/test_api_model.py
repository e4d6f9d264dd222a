"""The typed API model (`worker.http.api.model.Route`) is the one source: every `/v1/` route is described,
the permission `authorize` checks is the route's, a handler without a description is refused, real answers
are of the route's response type, and request bodies are validated by the route's body type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from tests.api_support import ACTIVE_CALL, Api, open_api, opus_frames
from tests.test_openapi import registered_v1_routes
from tests.test_rbac_matrix import MATRIX, _matches
from worker.auth.access import Role
from worker.http.api.e2ee_keys import SFrameKeys
from worker.http.api.model import Route, parse_body
from worker.http.api.routes import API
from worker.http.api.settings import SettingsUpdate
from worker.http.auth import auth_middleware, authorize, principal_of


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path, seed_packets=opus_frames(3.0)) as a:
        a.ctx.escalations.escalate(ACTIVE_CALL, "setup")
        a.calls[ACTIVE_CALL].add_sframe_keys = lambda suite, keys: None  # type: ignore[method-assign]
        yield a


def _route(method: str, path: str) -> Route:
    found = [r for r in API if r.method == method and _matches(r.path, path.split("?")[0])]
    assert len(found) == 1, (method, path)
    return found[0]


def test_every_registered_route_has_one_description() -> None:
    described = [(r.method, r.path) for r in API]
    assert len(described) == len(set(described))
    assert set(described) == registered_v1_routes()
    assert len({r.operation_id for r in API}) == len(API)


def test_the_matrix_permissions_are_the_routes() -> None:
    """The RBAC matrix (which checks status and audit per role) expects exactly the routes' permissions."""
    for row in MATRIX:
        assert _route(row.method, row.path).permission is row.permission, row.path


async def test_answers_are_of_the_routes_response_types(api: Api) -> None:
    headers = api.auth(Role.OWNER, mfa=True, user="owner")
    checked = 0
    for row in MATRIX:
        route = _route(row.method, row.path)
        if row.path.endswith("/live"):
            continue  # an event stream, opened and held by the matrix test
        kwargs: dict[str, Any] = {"headers": headers}
        if row.body is not None:
            kwargs["json"] = row.body
        async with api.client.request(row.method, row.path, **kwargs) as resp:
            assert resp.status == route.status, (row.path, await resp.text())
            if not isinstance(route.response, type):
                assert resp.content_type in route.response.content, row.path
                continue
            assert issubclass(route.response, BaseModel)
            route.response.model_validate(await resp.json())
            checked += 1
    assert checked >= 15


async def test_a_v1_handler_without_a_description_is_refused(tmp_path: Path) -> None:
    """`authorize` takes the permission from the route's description; without one it allows nothing."""
    reached: list[str] = []

    async def undescribed(request: web.Request) -> web.Response:
        await authorize(request, "settings", org=principal_of(request).org_id)
        reached.append("past authorize")
        return web.json_response({})

    async with open_api(tmp_path) as a:
        app = web.Application(middlewares=[auth_middleware(a.ctx)])
        app.router.add_get("/v1/undescribed", undescribed)
        async with TestClient(TestServer(app)) as client:
            since = await a.last_seq()
            async with client.get("/v1/undescribed", headers=a.auth(Role.OWNER)) as resp:
                assert resp.status == 500
                assert await resp.json() == {"error": "internal error"}
            assert reached == []
            audited = [e["outcome"] for e in await a.audit_tail(since) if e["action"].startswith("api.")]
            assert audited == ["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no setting given; settable: phi_protection, e2ee_required, recording_enabled, retention_days"),
        ({"colour": 1, "b": 2}, "unknown setting 'b'; settable: phi_protection, e2ee_required, "),
        ({"e2ee_required": None}, "e2ee_required must be true or false"),
        ({"phi_protection": 1}, "phi_protection must be true or false"),
        ({"retention_days": True}, "retention_days must be null or an integer from 1 to 36500"),
        ({"retention_days": 36501}, "retention_days must be null or an integer from 1 to 36500"),
        ({"retention_days": "{0}"}, "retention_days must be null or an integer from 1 to 36500"),
    ],
)
def test_settings_body_type_keeps_its_messages(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_body(SettingsUpdate, body)
    assert str(err.value).startswith(message)


def test_settings_body_type_keeps_what_was_given() -> None:
    given = parse_body(SettingsUpdate, {"retention_days": None, "e2ee_required": True})
    assert given.model_dump(exclude_unset=True) == {"retention_days": None, "e2ee_required": True}


def test_sframe_keys_body_type_never_echoes_key_material() -> None:
    secret = "c2VjcmV0LWtleS1tYXRlcmlhbA"  # decodes to 19 bytes, base64url
    assert parse_body(SFrameKeys, {"keys": {"7": secret}}).decoded() == {7: b"secret-key-material"}
    for body, message in (
        ({"keys": {"7": secret + "!"}}, "keys entry 1: key must be base64url"),
        ({"keys": {"7": secret[:8]}}, "keys entry 1: key must be 16-64 bytes"),
        ({"keys": {"x": secret}}, "keys entry 1: kid must be an integer 0..2^64-1"),
        ({"suite": 9, "keys": {"7": secret}}, "suite must be an RFC 9605 cipher suite number 1-5"),
        ({"keys": {"7": secret}, "key": secret}, "body takes only suite and keys"),
        ({"keys": []}, "keys must be an object of 1-16 kid: base64url key entries"),
    ):
        with pytest.raises(ValueError) as err:
            parse_body(SFrameKeys, body)
        assert str(err.value) == message
        assert secret[:8] not in repr(err.value.__context__) and err.value.__cause__ is None

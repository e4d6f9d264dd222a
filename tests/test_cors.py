"""CORS on the HTTP edge: allow-list only, preflights before authentication, never `*`."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from worker.http.cors import Cors, parse_origins

ALLOWED = "https://app.example.org"


async def _client(origins: frozenset[str]) -> TestClient[web.Request, web.Application]:
    cors = Cors(origins)

    async def whip(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer ok":
            return web.Response(status=401, text="missing bearer token\n")
        return web.Response(status=201, text="v=0\n", headers={"Location": "/whip/abc", "ETag": '"1"'})

    app = web.Application(middlewares=[cors.middleware()])
    app.on_response_prepare.append(cors.on_prepare)
    app.add_routes([web.post("/whip", whip), web.get("/healthz", whip)])
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_allowed_origin_gets_preflight_and_exposed_headers() -> None:
    client = await _client(parse_origins([ALLOWED]))
    try:
        pre = await client.options(
            "/whip",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status == 204
        assert pre.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "POST" in pre.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
        assert "Access-Control-Allow-Credentials" not in pre.headers
        ok = await client.post("/whip", headers={"Origin": ALLOWED, "Authorization": "Bearer ok"})
        assert ok.status == 201 and ok.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert {"Location", "Link", "ETag"} <= {
            h.strip() for h in ok.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert "Origin" in ok.headers.getall("Vary")
        refused = await client.post("/whip", headers={"Origin": ALLOWED})
        assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == ALLOWED
        other = await client.get("/healthz", headers={"Origin": ALLOWED})
        assert "Access-Control-Allow-Origin" not in other.headers  # only /whip, /whip/<id> and /v1/
    finally:
        await client.close()


@pytest.mark.parametrize("origins", [frozenset(), frozenset({"https://other.example.org"})])
async def test_other_origins_get_no_cors_headers(origins: frozenset[str]) -> None:
    client = await _client(origins)
    try:
        pre = await client.options(
            "/whip", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
        )
        assert pre.status == 403 and "Access-Control-Allow-Origin" not in pre.headers
        resp = await client.post("/whip", headers={"Origin": ALLOWED, "Authorization": "Bearer ok"})
        assert resp.status == 201 and "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await client.close()


@pytest.mark.parametrize(
    "bad", ["*", "https://app.example.org/path", "app.example.org", "ftp://x.org", "null"]
)
def test_origins_must_be_exact(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^cors-origins entry 2 is not an origin"):
        parse_origins([ALLOWED, bad])


def test_origins_are_normalised() -> None:
    assert parse_origins(["HTTPS://App.Example.org/", "http://127.0.0.1:8080"]) == {
        ALLOWED,
        "http://127.0.0.1:8080",
    }

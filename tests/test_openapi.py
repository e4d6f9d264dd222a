"""`/openapi.json`: a valid OpenAPI 3.1 document that covers every registered `/v1/` route, the docs table
that is generated from it, and schemathesis against a live loopback server finding no server error."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from tests.api_support import open_api
from tests.support import REPO, need
from worker.app_context import AppContext
from worker.auth.access import Permission, Role
from worker.http import openapi
from worker.http.api.routes import api_routes
from worker.http.openapi import openapi_spec

METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH"}


def _module(name: str) -> Any:
    """Import a test tool; skipped locally when missing, a failure in CI (tests.support.need)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, name)


def registered_v1_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route `api_routes` registers (HEAD, added by aiohttp, left out)."""
    app = web.Application()
    app.add_routes(api_routes(cast(AppContext, None)))  # the routes do not touch ctx when registered
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if route.method in METHODS and template:
            out.add((route.method, template))
    return out


def test_spec_is_valid_openapi_31() -> None:
    validator = _module("openapi_spec_validator")
    spec = openapi_spec()
    assert spec["openapi"].startswith("3.1")
    validator.validate(spec)


def test_spec_covers_every_registered_route() -> None:
    paths = openapi_spec()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops if p.startswith("/v1/")}
    assert documented == registered_v1_routes()
    for path in ("/whip", "/whip/{call_id}", "/healthz", "/readyz", "/metrics"):
        assert path in paths
    assert set(paths["/whip"]) == {"post"} and set(paths["/whip/{call_id}"]) == {"delete"}


def test_every_v1_operation_names_its_permission_and_errors() -> None:
    spec = openapi_spec()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    seen: set[str] = set()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] not in seen
            seen.add(op["operationId"])
            if not path.startswith("/v1/"):
                continue
            Permission(op["x-permission"])  # a real permission
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            for code, resp in op["responses"].items():
                if code >= "400":
                    assert resp["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }
            if "{call_id}" in path:
                assert {"400", "404"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert {"413", "415"} <= set(op["responses"]), (method, path)
    codes = {c for ops in spec["paths"].values() for op in ops.values() for c in op["responses"]}
    assert {"401", "403", "404", "409", "413", "415", "503"} <= codes


def test_docs_table_is_generated_from_the_spec() -> None:
    text = (REPO / "docs" / "api.md").read_text("utf-8")
    assert openapi.sync_doc(text) == text, "run: python -m worker.http.openapi docs/api.md"


def _fuzz(base: str, token: str, max_examples: int) -> tuple[list[str], int]:
    """Runs in a thread (schemathesis is synchronous); returns the failures (one line each) and how many
    requests it sent."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=10).include(path_regex="^/v1/")
    failures: list[str] = []
    sent = 0
    strategies = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"schemathesis cannot use an operation: {result.err()}")
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(result.ok().as_strategy(generation_mode=mode))
    for strategy in strategies:  # every operation gets its share of examples, valid and invalid

        @given(case=strategy)
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal sent
            sent += 1
            try:
                case.call_and_validate(
                    base_url=base,
                    headers={"Authorization": f"Bearer {token}"},
                    checks=[not_a_server_error],
                    timeout=10,
                )
            except Exception as exc:  # schemathesis failures (groups too): collect, do not shrink
                failures.append(f"{case.method} {case.formatted_path}: {str(exc).splitlines()[0][:200]}")

        run()
    return failures, sent


async def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    _module("schemathesis")
    from tests.api_support import opus_frames

    async with open_api(tmp_path, seed_packets=opus_frames(1.0)) as api:
        base = str(api.client.make_url("")).rstrip("/")  # TestServer: a real socket on 127.0.0.1, random port
        assert base.startswith("http://127.0.0.1:")
        token = api.token(Role.OWNER, mfa=True)
        since = await api.last_seq()
        failures, sent = await asyncio.wait_for(asyncio.to_thread(_fuzz, base, token, 8), timeout=240)
        assert not failures, "\n".join(failures[:20])
        assert sent >= 19 * 2 * 4
        # Every fuzzed request that reached the API was authenticated and left an audit entry.
        assert await api.last_seq() - since >= sent // 2
        # Every fuzzed request was authenticated and audited; the log still verifies.
        assert (await api.ctx.security.audit.verify()) == []

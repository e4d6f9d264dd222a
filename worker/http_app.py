"""The aiohttp application of `serve`: WHIP, demo page, health, readiness, metrics, OpenAPI, admin API."""

from __future__ import annotations

import json

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.access import Permission, check
from worker.admission import Admission, AdmissionConfig, admission_middleware, gauge_value
from worker.app_context import AppContext
from worker.e2ee import sframe_hook
from worker.identity import IdentityError
from worker.security import actor_of
from worker.webrtc import Calls
from worker.whip import STATIC, Principal, Unauthorized, demo_routes, whip_routes

log = structlog.get_logger("worker.http")

MAX_REQUEST_BYTES = 1024 * 1024  # admin API bodies are small; anything larger is refused with 413


def _whip_authorizer(ctx: AppContext):  # type: ignore[no-untyped-def]
    """WHIP callers (the agent platform) authenticate like API callers and need CONFIGURE_AGENTS."""

    async def authorize(request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        try:
            p = ctx.security.authenticator.authenticate(header, request.remote)
        except IdentityError as exc:
            raise Unauthorized(str(exc)) from None
        decision = check(p, Permission.CONFIGURE_AGENTS)
        action = f"whip.{request.method.lower()}"
        await ctx.security.audit.append(
            actor_of(p),
            action,
            "whip",
            "allowed" if decision.allowed else "denied",
            details=None if decision.allowed else {"reason": decision.reason},
        )
        if not decision.allowed:
            raise Unauthorized(decision.reason)
        return Principal(subject=p.user_id, org_id=p.org_id)

    return authorize


def _static_js(name: str) -> web.RouteDef:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / name, headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"}
        )

    return web.get(f"/{name}", handler)


def build_app(ctx: AppContext, calls: Calls, admission: AdmissionConfig | None = None) -> web.Application:
    from worker.admin_api import api_routes
    from worker.http_auth import auth_middleware
    from worker.openapi import openapi_spec

    # Admission (load, per-IP offer and failed-auth limits) runs first, before authentication or any body.
    gate = Admission(
        admission or AdmissionConfig.from_env(),
        asr_backlog=gauge_value(ctx.metrics.registry, "converse_asr_queue_depth"),
        registry=ctx.metrics.registry,
    )
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES, middlewares=[admission_middleware(gate), auth_middleware(ctx)]
    )
    app.cleanup_ctx.append(gate.lifecycle)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ok, reason = ctx.readiness()
        if calls.draining:
            ok, reason = False, "draining"
        return web.json_response(
            {"ready": ok, "reason": reason, "active_calls": len(calls)}, status=200 if ok else 503
        )

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(ctx.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    spec = json.dumps(openapi_spec())

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=spec, content_type="application/json")

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.json", openapi),
            _static_js("sframe.js"),
            _static_js("e2ee-worker.js"),
        ]
    )
    app.add_routes(demo_routes())
    app.add_routes(whip_routes(calls, authorize=_whip_authorizer(ctx), on_sframe=sframe_hook(ctx.metrics)))
    app.add_routes(api_routes(ctx))
    return app

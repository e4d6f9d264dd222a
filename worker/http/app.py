"""The aiohttp application of `serve`: WHIP, demo page, health, readiness, metrics, OpenAPI, admin API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from storage.audit import Actor
from storage.errors import InvalidIdError
from storage.protocols import validate_call_id
from worker.app_context import AppContext
from worker.auth.access import Permission, check
from worker.auth.access import Principal as AccessPrincipal
from worker.auth.identity import IdentityError
from worker.auth.security import actor_of
from worker.config import HttpSettings
from worker.http.admission import Admission, AdmissionConfig, admission_middleware, gauge_value
from worker.http.api.routes import api_routes
from worker.http.auth import auth_middleware
from worker.http.cors import Cors
from worker.http.openapi import openapi_spec
from worker.telephony.media_streams import media_streams_routes
from worker.webrtc.e2ee import sframe_hook
from worker.webrtc.peer import Calls
from worker.webrtc.whip import (
    STATIC,
    AuthUnavailable,
    Principal,
    Unauthorized,
    WhipLimits,
    demo_routes,
    whip_routes,
)

log = structlog.get_logger("worker.http")

MAX_REQUEST_BYTES = 1024 * 1024  # admin API bodies are small; anything larger is refused with 413


WHIP_PRINCIPAL = web.RequestKey("converse_whip_principal", AccessPrincipal)
AUDIT_QUEUE = 1024  # call-end entries waiting for the audit log; past this they are logged as lost


def _whip_resource(request: web.Request) -> str:
    """`whip` for an offer, `call/<id>` for a call (`call/-` when the id in the path is invalid)."""
    raw = request.match_info.get("call_id")
    if raw is None:
        return "whip"
    try:
        return f"call/{validate_call_id(raw)}"
    except InvalidIdError:
        return "call/-"


def _whip_authorizer(ctx: AppContext):  # type: ignore[no-untyped-def]
    """WHIP callers (the agent platform) authenticate like API callers and need CONFIGURE_AGENTS.

    Every attempt leaves an entry: a failed authentication as `whip.authenticate` (anonymous, with the
    peer IP), the decision as `whip.post` / `whip.delete` naming the call for a DELETE.
    """

    async def audit(
        actor: Actor, action: str, resource: str, outcome: str, details: dict[str, Any] | None
    ) -> None:
        try:
            await ctx.security.audit.append(actor, action, resource, outcome, details=details)
        except Exception as exc:  # fail closed: no entry, no call (answered 503)
            log.error("audit_append_failed", action=action, error=type(exc).__name__)
            raise AuthUnavailable("audit log unavailable") from None

    async def authorize(request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        action = f"whip.{request.method.lower()}"
        resource = _whip_resource(request)
        try:
            p = ctx.security.authenticator.authenticate(header, request.remote)
        except IdentityError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "authentication failed"
            await audit(
                Actor(user_id="anonymous", ip=request.remote),
                "whip.authenticate",
                resource,
                "denied",
                details={"method": request.method, "reason": reason},
            )
            raise Unauthorized(reason) from None
        decision = check(p, Permission.CONFIGURE_AGENTS)
        allowed, reason = decision.allowed, decision.reason
        live = (
            ctx.engine.get_call(request.match_info.get("call_id", ""))
            if "call_id" in request.match_info
            else None
        )
        foreign = allowed and live is not None and live.info.org_id != p.org_id
        if foreign:  # denied and audited, but answered 404 by the handler as an unknown call would be
            allowed, reason = False, "call of another organisation"
        await audit(
            actor_of(p),
            action,
            resource,
            "allowed" if allowed else "denied",
            details=None if allowed else {"reason": reason},
        )
        if not allowed and not foreign:
            raise Unauthorized(reason)
        request[WHIP_PRINCIPAL] = p
        return Principal(subject=p.user_id, org_id=p.org_id)

    return authorize


def _call_started(ctx: AppContext):  # type: ignore[no-untyped-def]
    async def started(request: web.Request, call_id: str) -> None:
        p = request.get(WHIP_PRINCIPAL)
        actor = actor_of(p) if p is not None else Actor(user_id="anonymous", ip=request.remote)
        await ctx.security.audit.append(actor, "call.start", f"call/{call_id}", "ok", details={"via": "whip"})

    return started


class CallEndAudit:
    """`call.end` entries for every call the engine ends (hang-up, DELETE, timeouts, drain), written by one
    task the app owns through a bounded queue: the engine's hook is synchronous and must not block."""

    def __init__(self, ctx: AppContext, maxsize: int = AUDIT_QUEUE) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize)

    def __call__(self, call_id: str) -> None:
        try:
            self._queue.put_nowait(call_id)
        except asyncio.QueueFull:
            log.error("audit_call_end_lost", call_id=call_id)

    async def _write(self) -> None:
        while True:
            call_id = await self._queue.get()
            try:
                await self._ctx.security.audit.record_system("call.end", f"call/{call_id}", {"via": "engine"})
            except Exception as exc:
                log.error("audit_call_end_failed", call_id=call_id, error=type(exc).__name__)
            finally:
                self._queue.task_done()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        hooks = self._ctx.engine.on_call_ended
        hooks.append(self)
        task = asyncio.create_task(self._write())
        try:
            yield
        finally:
            hooks.remove(self)
            try:
                async with asyncio.timeout(10):
                    await self._queue.join()  # what drain ended is written before the app goes
            except TimeoutError:
                log.error("audit_call_end_lost", pending=self._queue.qsize())
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


def _static_js(name: str) -> web.RouteDef:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / name, headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"}
        )

    return web.get(f"/{name}", handler)


def build_app(
    ctx: AppContext,
    calls: Calls,
    admission: AdmissionConfig | None = None,
    *,
    http: HttpSettings | None = None,
) -> web.Application:
    # Admission (load, per-IP offer and failed-auth limits) runs first, before authentication or any body.
    gate = Admission(
        admission or AdmissionConfig.from_env(),
        asr_backlog=gauge_value(ctx.metrics.registry, "converse_asr_queue_depth"),
        registry=ctx.metrics.registry,
    )
    # CORS preflights are answered before admission and authentication (a browser sends them bare).
    http = http or HttpSettings()
    cors = Cors(http.cors_origins)
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES,
        middlewares=[cors.middleware(), admission_middleware(gate), auth_middleware(ctx)],
    )
    app.on_response_prepare.append(cors.on_prepare)
    app.cleanup_ctx.append(gate.lifecycle)
    app.cleanup_ctx.append(CallEndAudit(ctx).lifecycle)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ok, reason = ctx.readiness()
        if calls.draining:
            ok, reason = False, "draining"
        cap = calls.capacity()  # connected and half-open sessions, each against its own budget
        cap["media_streams"] = len(streams)  # telephony calls share max_calls with connected WebRTC calls
        if ok and cap["connected_calls"] + cap["media_streams"] >= cap["max_calls"]:
            ok, reason = False, "at capacity"
        active = len(calls) + len(streams)
        return web.json_response(
            {"ready": ok, "reason": reason, "active_calls": active, **cap}, status=200 if ok else 503
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
    app.add_routes(
        whip_routes(
            calls,
            authorize=_whip_authorizer(ctx),
            limits=WhipLimits(max_tracks=http.max_tracks),
            on_sframe=sframe_hook(ctx.metrics),
            on_started=_call_started(ctx),
        )
    )
    app.add_routes(api_routes(ctx))
    streams = media_streams_routes(app, ctx, calls)  # GET /media-streams: telephony, shares max_calls
    return app

"""Authentication, authorisation and audit for the admin API (`/v1/...`).

`auth_middleware(ctx)` authenticates every `/v1/` request (`Authorization: Bearer`, through
`ctx.security.authenticator`, with the peer address as the IP), keeps the `Principal` on the request and turns
`ApiError`s and aiohttp's own HTTP errors into `{"error": "<one line>"}`. A failed authentication answers 401
(the identity error's one-line reason, never the token) and is audited with an anonymous actor.

Handlers call `authorize(request, permission, resource, org=...)` exactly once: it runs `access.check`,
appends one audit entry (outcome "allowed" or "denied": who, with IP and role; `api.<permission>`; the
resource) *before* anything is disclosed or changed, and raises 403 with the decision's reason. If the audit
log cannot be written, the request fails closed with 503. A request that never reached `authorize` (a bad id,
an unknown route, a crash) still leaves one entry, `api.request` with outcome "error" and the status.

Organisation scoping: a principal acts only on its own organisation. A call of another organisation is
answered 404, exactly as a call that does not exist, so ids cannot be probed across organisations; the
audit entry records the denial. Pod-wide operations (audit log, keys, retention) belong to the pod's
organisation (`ctx.org_id`); members of other organisations get 403.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import jwt
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from storage.audit import Actor
from storage.errors import StorageError
from worker.app_context import AppContext
from worker.auth.access import Permission, Principal, check
from worker.auth.identity import IdentityError
from worker.auth.security import actor_of
from worker.http.api.model import ROUTE

log = structlog.get_logger("worker.http.auth")

API_PREFIX: Final = "/v1/"
MAX_JSON_BYTES: Final = 64 * 1024
_ANONYMOUS: Final = "anonymous"


class ApiError(Exception):
    """An answer other than success: status and a one-line message (ids and names only, never PHI)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(slots=True)
class ApiState:
    """What the middleware keeps on each `/v1/` request."""

    ctx: AppContext
    principal: Principal
    expires_at: float | None = None  # the bearer JWT's `exp` (UNIX seconds); None for the static token
    audited: bool = False
    audit_seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


STATE: Final = web.RequestKey("converse_api_state", ApiState)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    one_line = " ".join(message.split())[:300] or "error"
    return web.json_response({"error": one_line}, status=status, headers=headers)


def state_of(request: web.Request) -> ApiState:
    try:
        return request[STATE]
    except KeyError:
        raise ApiError(401, "not authenticated") from None


def token_expiry(authorization: str | None) -> float | None:
    """The `exp` of a bearer JWT the authenticator has already verified (so read without verifying again),
    or None for a token that is not a JWT (the static token never expires)."""
    token = (authorization or "").strip().partition(" ")[2].strip()
    if token.count(".") != 2:
        return None
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def principal_of(request: web.Request) -> Principal:
    return state_of(request).principal


def ctx_of(request: web.Request) -> AppContext:
    return state_of(request).ctx


def route_name(request: web.Request) -> str:
    """The route template (`/v1/calls/{call_id}`), never the raw path (which is caller-controlled)."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


async def _append(ctx: AppContext, actor: Actor, action: str, resource: str, outcome: str, **kw: Any) -> int:
    try:
        return await ctx.security.audit.append(actor, action, resource, outcome, **kw)
    except Exception as exc:  # fail closed: no audit entry, no answer
        log.error("audit_append_failed", action=action, error=type(exc).__name__)
        raise ApiError(503, "audit log unavailable") from None


def permission_of(request: web.Request) -> Permission:
    """The permission the matched route's typed description names (`worker.http.api.model.Route`)."""
    try:
        return request[ROUTE].permission
    except KeyError:  # a /v1/ handler registered without its description: refuse, loudly
        raise RuntimeError(f"route {route_name(request)} has no typed description") from None


async def authorize(
    request: web.Request,
    resource: str,
    *,
    org: str | None = None,
    deny: str | None = None,
    not_found: str | None = None,
    before: object = None,
    after: object = None,
    details: dict[str, Any] | None = None,
) -> Principal:
    """Check the route's permission (on a resource of organisation `org`), audit the decision, raise 403/404
    if denied.

    `deny`: a reason to refuse even when the role allows it (e.g. the caller does not hold the claim).
    With `not_found` (the message a missing resource gets), a denial caused only by `org` answers 404.
    """
    st = state_of(request)
    p = st.principal
    permission = permission_of(request)
    decision = check(p, permission, org_id=org)
    allowed, reason = decision.allowed, decision.reason
    foreign = not allowed and check(p, permission).allowed
    if allowed and deny is not None:
        allowed, reason = False, deny
    info = {"method": request.method, "route": route_name(request), "reason": reason, **(details or {})}
    st.audit_seq = await _append(
        st.ctx,
        actor_of(p),
        f"api.{permission.value}",
        resource,
        "allowed" if allowed else "denied",
        before=before,
        after=after,
        details=info,
    )
    st.audited = True
    if not allowed:
        if foreign and not_found is not None:
            raise ApiError(404, not_found)
        raise ApiError(403, reason)
    return p


async def precheck(request: web.Request, resource: str, *, org: str | None) -> None:
    """Refuse (and audit) early when the role cannot use the route's permission at all, before a body is
    read; the allowed decision is audited later by `authorize`, with what is known then (before/after)."""
    if not check(principal_of(request), permission_of(request), org_id=org).allowed:
        await authorize(request, resource, org=org)


async def record(
    request: web.Request,
    action: str,
    resource: str,
    outcome: str = "ok",
    *,
    before: object = None,
    after: object = None,
    details: dict[str, Any] | None = None,
) -> None:
    """A further entry for what an authorised request changed (settings, keys, retention)."""
    st = state_of(request)
    await _append(
        st.ctx, actor_of(st.principal), action, resource, outcome, before=before, after=after, details=details
    )


def reject(status: int, message: str) -> NoReturn:
    raise ApiError(status, message)


async def read_json(request: web.Request, *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request's JSON object: 415 unless application/json, 413 past `max_bytes`, 400 if not an object."""
    if request.content_type != "application/json":
        reject(415, "request body must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        reject(413, f"request body exceeds {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        reject(413, f"request body exceeds {max_bytes} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        reject(400, "request body is not valid JSON")
    except RecursionError:  # "[[[[..." past the parser's depth: a bad request, not a crash
        reject(400, "request body is nested too deeply")
    if not isinstance(value, dict):
        reject(400, "request body must be a JSON object")
    return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unauthorized(reason: str) -> web.Response:
    return error_response(401, reason, {"WWW-Authenticate": 'Bearer realm="converse", error="invalid_token"'})


def auth_middleware(ctx: AppContext) -> Middleware:
    """The aiohttp middleware for `/v1/` (other paths pass through untouched)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        ip = request.remote
        try:
            principal = ctx.security.authenticator.authenticate(request.headers.get("Authorization"), ip)
        except IdentityError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "authentication failed"
            try:
                await _append(
                    ctx,
                    Actor(user_id=_ANONYMOUS, ip=ip),
                    "api.authenticate",
                    route_name(request),
                    "denied",
                    details={"method": request.method, "reason": reason},
                )
            except ApiError as err:
                return error_response(err.status, err.message)
            return _unauthorized(reason)
        st = ApiState(ctx, principal, token_expiry(request.headers.get("Authorization")))
        request[STATE] = st
        status = 500
        try:
            response = await _answer(request, handler)
            status = response.status
            return response
        finally:
            if not st.audited:
                try:
                    await _append(
                        ctx,
                        actor_of(principal),
                        "api.request",
                        route_name(request),
                        "error",
                        details={"method": request.method, "status": status},
                    )
                except ApiError:
                    pass  # already logged; the answer is on its way

    return middleware


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Every id in a /v1/ path is ASCII (call ids, track and entry numbers): "²" passes str.isdigit() but
    # not int(), so anything else is refused here, once, before a handler can trip on it.
    if not all(value.isascii() for value in request.match_info.values()):
        return error_response(400, "invalid path parameter: expected ASCII letters, digits, - and _")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:  # aiohttp's own: unknown route, method not allowed, body too large
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, exc.reason, headers)
    except ConnectionResetError:  # the client went away: nothing to answer
        raise
    except StorageError as exc:  # a backend outage; the message may carry paths: logged, not answered
        log.error("api_storage_failed", route=route_name(request), error=type(exc).__name__)
        return error_response(503, "storage unavailable", {"Retry-After": "5"})
    except Exception as exc:
        log.error("api_handler_failed", route=route_name(request), error=type(exc).__name__)
        return error_response(500, "internal error")

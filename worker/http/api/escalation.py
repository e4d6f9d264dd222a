"""Admin API: escalation of active calls (mark, queue, claim, release)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from worker.auth.access import Permission
from worker.calls.escalations import Escalation
from worker.http.api import schemas
from worker.http.api.calls import active_call, authorize_call
from worker.http.api.model import CALL_ID, Route
from worker.http.auth import ApiError, authorize, ctx_of, principal_of


def escalation_json(esc: Escalation, me: str, active: bool) -> dict[str, Any]:
    return {
        "call_id": esc.call_id,
        "state": "claimed" if esc.claimed_by else "open",
        "claimed_by": esc.claimed_by,
        "claimed_by_me": esc.claimed_by == me,
        "active": active,
    }


async def escalate(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    info = await authorize_call(request, "/escalation")
    if active_call(request, info.call_id) is None:
        raise ApiError(409, f"call {info.call_id} is not active")
    esc = ctx.escalations.escalate(info.call_id, p.user_id)
    return web.json_response(escalation_json(esc, p.user_id, True), status=201)


async def list_escalations(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await authorize(request, "escalations", org=p.org_id)
    out = []
    for esc in ctx.escalations.list():
        live = active_call(request, esc.call_id)
        if live is None:
            ctx.escalations.forget(esc.call_id)  # the call ended: nothing left to claim
            continue
        if live.info.org_id == p.org_id:
            out.append(escalation_json(esc, p.user_id, True))
    return web.json_response({"escalations": out})


async def _claim_or_release(request: web.Request, claim: bool) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    info = await authorize_call(request, "/escalation")
    if ctx.escalations.get(info.call_id) is None or active_call(request, info.call_id) is None:
        raise ApiError(404, f"call {info.call_id} is not an active escalated call")
    try:
        if claim:
            esc = ctx.escalations.claim(info.call_id, p.user_id)
        else:
            esc = ctx.escalations.release(info.call_id, p.user_id)
    except PermissionError as exc:
        raise ApiError(409, str(exc)) from None
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    return web.json_response(escalation_json(esc, p.user_id, True))


async def claim(request: web.Request) -> web.Response:
    return await _claim_or_release(request, True)


async def release(request: web.Request) -> web.Response:
    return await _claim_or_release(request, False)


ROUTES: Final = (
    Route(
        "POST",
        "/v1/calls/{call_id}/escalate",
        escalate,
        "escalateCall",
        "Mark an active call escalated",
        Permission.ESCALATE_CALL,
        schemas.Escalation,
        status=201,
        errors=(400, 404, 409),
        params=(CALL_ID,),
    ),
    Route(
        "GET",
        "/v1/escalations",
        list_escalations,
        "listEscalations",
        "Escalated active calls (ids and state only)",
        Permission.LIST_ESCALATED,
        schemas.EscalationList,
    ),
    Route(
        "POST",
        "/v1/calls/{call_id}/claim",
        claim,
        "claimCall",
        "Claim an escalated call",
        Permission.CLAIM_ESCALATED,
        schemas.Escalation,
        errors=(400, 404, 409),
        params=(CALL_ID,),
    ),
    Route(
        "POST",
        "/v1/calls/{call_id}/release",
        release,
        "releaseCall",
        "Release a claimed call",
        Permission.CLAIM_ESCALATED,
        schemas.Escalation,
        errors=(400, 404, 409),
        params=(CALL_ID,),
    ),
)

"""Admin API: calls (list, detail: metadata only) and stored, redacted transcripts."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from aiohttp import web

from storage.errors import InvalidIdError, NotFoundError
from storage.protocols import CallInfo, validate_call_id
from worker import records
from worker.app_context import AppContext
from worker.auth.access import Permission
from worker.calls.analytics import placeholder_name
from worker.calls.engine import Call
from worker.http.api import schemas
from worker.http.api.model import CALL_ID, Route
from worker.http.auth import ApiError, authorize, ctx_of, precheck, principal_of


def call_id_of(request: web.Request) -> str:
    raw = request.match_info.get("call_id", "")
    try:
        return validate_call_id(raw)
    except InvalidIdError:
        raise ApiError(400, "invalid call id: expected 1-64 of [A-Za-z0-9_-]") from None


def call_resource(request: web.Request, suffix: str = "") -> str:
    """`call/<id><suffix>` for the audit log (`call/-<suffix>` when the id in the path is invalid)."""
    try:
        return f"call/{call_id_of(request)}{suffix}"
    except ApiError:
        return f"call/-{suffix}"


def active_call(request: web.Request, call_id: str) -> Call | None:
    """The call if it is active in this pod (any organisation's: callers check `info.org_id`)."""
    return ctx_of(request).engine.get_call(call_id)


async def find_call(ctx: AppContext, call_id: str) -> CallInfo | None:
    """The stored call, or the engine's record of an active one, or None."""
    try:
        return await ctx.stores.transcripts.get_call(call_id)
    except NotFoundError:
        live = ctx.engine.get_call(call_id)
        return live.info if live is not None else None


async def authorize_call(request: web.Request, suffix: str = "") -> CallInfo:
    """Authorise the route's permission on the call in the path (audited), 404 if it is missing or not the
    caller's organisation's (the same answer for both)."""
    await precheck(request, call_resource(request, suffix), org=None)
    ctx, call_id = ctx_of(request), call_id_of(request)
    info = await find_call(ctx, call_id)
    missing = f"no call {call_id}"
    await authorize(
        request,
        f"call/{call_id}{suffix}",
        org=info.org_id if info is not None else None,
        not_found=missing,
        details=None if info is not None else {"found": False},
    )
    if info is None:
        raise ApiError(404, missing)
    return info


def call_json(c: CallInfo, ctx: AppContext) -> dict[str, Any]:
    return {
        **records.call_json(c),
        "end_reason": c.end_reason,
        "escalated": c.escalated or ctx.escalations.get(c.call_id) is not None,
    }


async def list_calls(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await authorize(request, "calls", org=p.org_id)
    calls = await ctx.stores.transcripts.list_calls(p.org_id)
    return web.json_response({"calls": [call_json(c, ctx) for c in calls if c.org_id == p.org_id]})


async def get_call(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    info = await authorize_call(request)
    store = ctx.stores.transcripts
    try:
        tracks = await store.list_tracks(info.call_id)
        utts = await store.get_utterances(info.call_id)
    except NotFoundError:  # ended and deleted by retention meanwhile
        raise ApiError(404, f"no call {info.call_id}") from None
    redactions: Counter[str] = Counter()
    for u in utts:
        for name, count in u.redactions.items():
            redactions[placeholder_name(name)] += count
    body = call_json(info, ctx)
    body["tracks"] = [
        {
            "track": t.track,
            "frames_received": t.frames_received,
            "frames_sealed": t.frames_sealed,
            "frames_lost": t.frames_lost,
            "duration_s": t.duration_s,
            "recording_deleted": t.key_destroyed,
        }
        for t in tracks
    ]
    body["utterances"] = len(utts)
    body["redactions"] = dict(sorted(redactions.items()))
    return web.json_response(body)


async def get_transcript(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    info = await authorize_call(request, "/transcript")
    try:
        utts = await ctx.stores.transcripts.get_utterances(info.call_id)
    except NotFoundError:
        raise ApiError(404, f"no call {info.call_id}") from None
    rows = [records.utterance_json(u) for u in utts]
    return web.json_response(
        {"call_id": info.call_id, "status": info.status, "utterances": rows},
        headers={"Cache-Control": "no-store"},
    )


ROUTES: Final = (
    Route(
        "GET",
        "/v1/calls",
        list_calls,
        "listCalls",
        "Calls of the organisation (metadata only)",
        Permission.LIST_CALLS,
        schemas.CallList,
    ),
    Route(
        "GET",
        "/v1/calls/{call_id}",
        get_call,
        "getCall",
        "One call: metadata, tracks, redaction counts (no text)",
        Permission.LIST_CALLS,
        schemas.CallDetail,
        errors=(400, 404),
        params=(CALL_ID,),
    ),
    Route(
        "GET",
        "/v1/calls/{call_id}/transcript",
        get_transcript,
        "getTranscript",
        "The stored, redacted transcript",
        Permission.READ_TRANSCRIPTS,
        schemas.Transcript,
        errors=(400, 404),
        params=(CALL_ID,),
    ),
)

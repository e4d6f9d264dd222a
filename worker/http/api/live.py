"""Admin API for active calls: escalation (mark, queue, claim, release), the live transcript view (SSE), and
E2EE SFrame key provisioning.

Live view: partial and final transcripts as the engine produces them, unredacted as the HIPAA page specifies
for the live view, from memory only; this module never stores or logs their text. It needs
`live_view_claimed` (a PHI permission, so `mfa` too) and, unless the caller may also read stored transcripts
(`read_transcripts`: Owner, Admin), the claim on that escalated call, checked again before every event: a
released claim ends the stream. The stream also ends at the bearer token's `exp` (a token is checked once,
when the stream opens; the stream must not outlive it), when the call ends, after `LIVE_MAX_S`, or when the
client goes away (a keepalive comment every `KEEPALIVE_S` notices that). At most `LIVE_MAX_VIEWERS` streams
at once in the pod, `LIVE_MAX_PER_ORG` per organisation and `LIVE_MAX_PER_USER` per user, so one tenant
cannot take every slot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from worker.auth.access import Permission, check
from worker.calls.contracts import LiveEvent
from worker.calls.engine import Call
from worker.calls.escalations import Escalation
from worker.http.api.calls import authorize_call, call_id_of, call_resource
from worker.http.auth import ApiError, authorize, ctx_of, precheck, principal_of, read_json, state_of

KEEPALIVE_S: Final = 15.0
LIVE_MAX_S: Final = 4 * 3600.0
LIVE_MAX_VIEWERS: Final = 64
LIVE_MAX_PER_ORG: Final = 16
LIVE_MAX_PER_USER: Final = 4
SFRAME_SUITES: Final = range(1, 6)  # RFC 9605 section 4.5
MAX_SFRAME_KEYS: Final = 16
SFRAME_KEY_BYTES: Final = range(16, 65)


def escalation_json(esc: Escalation, me: str, active: bool) -> dict[str, Any]:
    return {
        "call_id": esc.call_id,
        "state": "claimed" if esc.claimed_by else "open",
        "claimed_by": esc.claimed_by,
        "claimed_by_me": esc.claimed_by == me,
        "active": active,
    }


def _active(request: web.Request, call_id: str) -> Call | None:
    return ctx_of(request).engine.get_call(call_id)


async def escalate(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    info = await authorize_call(request, Permission.ESCALATE_CALL, "/escalation")
    if _active(request, info.call_id) is None:
        raise ApiError(409, f"call {info.call_id} is not active")
    esc = ctx.escalations.escalate(info.call_id, p.user_id)
    return web.json_response(escalation_json(esc, p.user_id, True), status=201)


async def list_escalations(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await authorize(request, Permission.LIST_ESCALATED, "escalations", org=p.org_id)
    out = []
    for esc in ctx.escalations.list():
        live = _active(request, esc.call_id)
        if live is None:
            ctx.escalations.forget(esc.call_id)  # the call ended: nothing left to claim
            continue
        if live.info.org_id == p.org_id:
            out.append(escalation_json(esc, p.user_id, True))
    return web.json_response({"escalations": out})


async def _claim_or_release(request: web.Request, claim: bool) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    info = await authorize_call(request, Permission.CLAIM_ESCALATED, "/escalation")
    if ctx.escalations.get(info.call_id) is None or _active(request, info.call_id) is None:
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


def _holds_claim(request: web.Request, call_id: str) -> bool:
    esc = ctx_of(request).escalations.get(call_id)
    return esc is not None and esc.claimed_by == principal_of(request).user_id


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class ViewerSlots:
    """Open live streams: in the pod, per organisation and per user (entries dropped at zero)."""

    __slots__ = ("by_org", "by_user", "count")

    def __init__(self) -> None:
        self.count = 0
        self.by_org: Counter[str] = Counter()
        self.by_user: Counter[tuple[str, str]] = Counter()

    def admit(self, org_id: str, user_id: str) -> str | None:
        """Take a slot, or return the reason none is free."""
        if self.count >= LIVE_MAX_VIEWERS:
            return "too many live viewers"
        if self.by_org[org_id] >= LIVE_MAX_PER_ORG:
            return f"too many live viewers in organisation {org_id} (at most {LIVE_MAX_PER_ORG})"
        if self.by_user[(org_id, user_id)] >= LIVE_MAX_PER_USER:
            return f"too many live views open by this user (at most {LIVE_MAX_PER_USER})"
        self.count += 1
        self.by_org[org_id] += 1
        self.by_user[(org_id, user_id)] += 1
        return None

    def leave(self, org_id: str, user_id: str) -> None:
        self.count -= 1
        self.by_org[org_id] -= 1
        if self.by_org[org_id] <= 0:
            del self.by_org[org_id]
        self.by_user[(org_id, user_id)] -= 1
        if self.by_user[(org_id, user_id)] <= 0:
            del self.by_user[(org_id, user_id)]


VIEWERS = ViewerSlots()  # the pod's live streams (one event loop per process)


async def live_view(request: web.Request) -> web.StreamResponse:
    p = principal_of(request)
    await precheck(request, Permission.LIVE_VIEW_CLAIMED, call_resource(request, "/live"), org=None)
    call_id = call_id_of(request)
    call = _active(request, call_id)
    needs_claim = not check(p, Permission.READ_TRANSCRIPTS).allowed
    deny = None
    if call is not None and needs_claim and not _holds_claim(request, call_id):
        deny = f"live view of call {call_id} requires holding its claim"
    await authorize(
        request,
        Permission.LIVE_VIEW_CLAIMED,
        f"call/{call_id}/live",
        org=call.info.org_id if call is not None else None,
        deny=deny,
        not_found=f"no active call {call_id}",
        details={"via": "claim" if needs_claim else "read_transcripts"},
    )
    if call is None:
        raise ApiError(404, f"no active call {call_id}")
    refused = VIEWERS.admit(p.org_id, p.user_id)
    if refused is not None:
        raise ApiError(503, refused, {"Retry-After": "10"})
    try:
        return await _stream(request, call, needs_claim)
    finally:
        VIEWERS.leave(p.org_id, p.user_id)


async def _next(events: AsyncIterator[LiveEvent]) -> LiveEvent | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


async def _stream(request: web.Request, call: Call, needs_claim: bool) -> web.StreamResponse:
    events: AsyncIterator[LiveEvent] = call.live()
    nxt = asyncio.create_task(_next(events))
    await asyncio.sleep(0)  # let the subscription register before the client sees the headers
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    reason = "call ended"
    deadline = time.monotonic() + LIVE_MAX_S
    expires_at = state_of(request).expires_at
    if expires_at is not None:  # wall-clock `exp` as a monotonic deadline, no leeway
        deadline = min(deadline, time.monotonic() + (expires_at - time.time()))
    try:
        await resp.prepare(request)
        await resp.write(b": live view of call " + call.call_id.encode() + b"\n\n")
        while True:
            timeout = min(KEEPALIVE_S, deadline - time.monotonic())
            if timeout <= 0:
                expired = expires_at is not None and time.time() >= expires_at
                reason = "token expired" if expired else "time limit"
                break
            done, _ = await asyncio.wait({nxt}, timeout=timeout)
            if needs_claim and not _holds_claim(request, call.call_id):
                reason = "claim released"
                break
            if not done:
                if ctx_of(request).engine.get_call(call.call_id) is None:
                    break
                await resp.write(b": keepalive\n\n")
                continue
            ev = nxt.result()
            if ev is None:
                break
            await resp.write(
                _sse(ev.kind, {"track": ev.track, "text": ev.text, "start": ev.start, "end": ev.end})
            )
            nxt = asyncio.create_task(_next(events))
        await resp.write(_sse("ended", {"call_id": call.call_id, "reason": reason}))
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        nxt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nxt
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    return resp


def _parse_keys(body: dict[str, Any]) -> tuple[int, dict[int, bytes]]:
    unknown = set(body) - {"suite", "keys"}
    if unknown:
        raise ValueError("body takes only suite and keys")
    suite = body.get("suite", 4)
    if isinstance(suite, bool) or not isinstance(suite, int) or suite not in SFRAME_SUITES:
        raise ValueError("suite must be an RFC 9605 cipher suite number 1-5")
    keys = body.get("keys")
    if not isinstance(keys, dict) or not 0 < len(keys) <= MAX_SFRAME_KEYS:
        raise ValueError(f"keys must be an object of 1-{MAX_SFRAME_KEYS} kid: base64url key entries")
    parsed: dict[int, bytes] = {}
    for position, (kid_text, key_text) in enumerate(keys.items(), start=1):
        if not (kid_text.isascii() and kid_text.isdigit()) or len(kid_text) > 20 or int(kid_text) >= 2**64:
            raise ValueError(f"keys entry {position}: kid must be an integer 0..2^64-1")
        if not isinstance(key_text, str) or len(key_text) > 200:
            raise ValueError(f"keys entry {position}: key must be base64url")
        try:
            padded = key_text.rstrip("=") + "=" * (-len(key_text.rstrip("=")) % 4)
            key = base64.b64decode(padded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"keys entry {position}: key must be base64url") from None
        if len(key) not in SFRAME_KEY_BYTES:
            raise ValueError(f"keys entry {position}: key must be 16-64 bytes")
        parsed[int(kid_text)] = key
    return suite, parsed


async def sframe_keys(request: web.Request) -> web.Response:
    """Never logs or audits key bytes: the audit entry names the suite and the kids only."""
    await precheck(request, Permission.CONFIGURE_SECURITY, call_resource(request, "/sframe-keys"), org=None)
    call_id = call_id_of(request)
    body = await read_json(request)
    try:
        suite, keys = _parse_keys(body)
    except ValueError as exc:
        error: str | None = str(exc)
        suite, keys = 0, {}
    else:
        error = None
    call = _active(request, call_id)
    await authorize(
        request,
        Permission.CONFIGURE_SECURITY,
        f"call/{call_id}/sframe-keys",
        org=call.info.org_id if call is not None else None,
        not_found=f"no active call {call_id}",
        details={"suite": suite, "kids": sorted(keys), "invalid": error is not None},
    )
    del body
    if error is not None:
        raise ApiError(400, error)
    if call is None:
        raise ApiError(404, f"no active call {call_id}")
    add = getattr(call, "add_sframe_keys", None)
    if add is None:
        raise ApiError(501, "this worker cannot take SFrame keys through the API")
    try:
        result = add(suite, keys)
        if inspect.isawaitable(result):
            await result
    except ValueError as exc:  # the call's refusal (not E2EE, suite differs, KID known); names kids, not keys
        raise ApiError(
            400, f"keys refused: {str(exc).splitlines()[0][:200] if str(exc) else 'invalid'}"
        ) from None
    return web.json_response({"call_id": call_id, "suite": suite, "kids": sorted(keys)})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/calls/{call_id}/escalate", escalate),
        web.get("/v1/escalations", list_escalations),
        web.post("/v1/calls/{call_id}/claim", claim),
        web.post("/v1/calls/{call_id}/release", release),
        web.get("/v1/calls/{call_id}/live", live_view),
        web.post("/v1/calls/{call_id}/sframe-keys", sframe_keys),
    ]

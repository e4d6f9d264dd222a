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
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from worker.auth.access import Permission, check
from worker.calls.contracts import LiveEvent
from worker.calls.engine import Call
from worker.http.api.calls import active_call, call_id_of, call_resource
from worker.http.api.model import CALL_ID, Media, Route
from worker.http.auth import ApiError, authorize, ctx_of, precheck, principal_of, state_of

KEEPALIVE_S: Final = 15.0
LIVE_MAX_S: Final = 4 * 3600.0
LIVE_MAX_VIEWERS: Final = 64
LIVE_MAX_PER_ORG: Final = 16
LIVE_MAX_PER_USER: Final = 4


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
    await precheck(request, call_resource(request, "/live"), org=None)
    call_id = call_id_of(request)
    call = active_call(request, call_id)
    needs_claim = not check(p, Permission.READ_TRANSCRIPTS).allowed
    deny = None
    if call is not None and needs_claim and not _holds_claim(request, call_id):
        deny = f"live view of call {call_id} requires holding its claim"
    await authorize(
        request,
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


ROUTES: Final = (
    Route(
        "GET",
        "/v1/calls/{call_id}/live",
        live_view,
        "liveView",
        "Server-Sent Events of the call's live transcript (unredacted, memory only): `event: "
        "partial|final` with data {track, text, start, end}, then `event: ended` with {call_id, "
        "reason}. Callers without read_transcripts must hold the call's claim.",
        Permission.LIVE_VIEW_CLAIMED,
        Media("An event stream", {"text/event-stream": {"schema": {"type": "string"}}}),
        errors=(400, 404, 503),
        params=(CALL_ID,),
    ),
)

"""WHIP (RFC 9725) ingest: aiohttp handlers over `worker.webrtc.peer.Calls`.

`POST /whip` (application/sdp offer, bearer token) -> 201 with the SDP answer (ICE gathering complete) and
`Location: /whip/<call_id>`; `DELETE /whip/<call_id>` -> 200 and the call ends. Every refusal is a 4xx/5xx
with a one-line plain-text reason. Trickle ICE (PATCH) is not supported: 405 (RFC 9725 section 4.3.1).

End-to-end encryption (issue 9): `Converse-SFrame-Suite` / `Converse-SFrame-Keys` are parsed here (a bad
header is 400) and handed to the `on_sframe` hook (`worker.webrtc.e2ee.sframe_hook`) before the answer;
unusable keys are 400, and a call without keys from an org that requires E2EE is 403 with the reason. Keys are
never logged or echoed.

Authentication is injected (`authorize(request) -> Principal`, sync or async, raising `Unauthorized`) so
the static bearer token (`static_bearer`) can give way to real identities without touching this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from worker.calls.contracts import CallSession, CallSummary
from worker.webrtc.e2ee import E2eeRequiredError, SFrameKeyError, SFrameParams
from worker.webrtc.peer import HANGUP, AtCapacityError, Calls, DrainingError, OfferError

__all__ = [
    "SFRAME_KEYS_HEADER",
    "SFRAME_SUITE_HEADER",
    "AuthUnavailable",
    "Authorize",
    "Principal",
    "SFrameHeaderError",
    "SFrameHook",
    "SFrameParams",
    "StartedHook",
    "Unauthorized",
    "WhipHandlers",
    "WhipLimits",
    "demo_routes",
    "parse_sframe_headers",
    "static_bearer",
    "whip_routes",
]

log = structlog.get_logger(__name__)

SDP = "application/sdp"
STATIC = Path(__file__).parent.parent / "static"
SFRAME_SUITE_HEADER = "Converse-SFrame-Suite"
SFRAME_KEYS_HEADER = "Converse-SFrame-Keys"
SFRAME_SUITES = range(1, 6)  # RFC 9605 section 4.5: 0x0001..0x0005
SFRAME_DEFAULT_SUITE = 4  # AES_128_GCM_SHA256_128
# Runtime PHI variables of the call (patient name, DOB, MRN, ...), base64url of a JSON object of strings.
# The HIPAA page: PHI reaches a call only as variables at run time; the worker uses them to redact the
# transcript and never stores or logs them.
VARIABLES_HEADER = "Converse-Call-Variables"
MAX_VARIABLES = 64


def parse_variables_header(value: str | None) -> dict[str, str] | None:
    """`Converse-Call-Variables: <base64url JSON object of strings>`; errors never quote the content."""
    if value is None:
        return None
    text = value.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..."
        raise SFrameHeaderError(f"{VARIABLES_HEADER}: not base64url JSON") from None
    if not isinstance(obj, dict) or len(obj) > MAX_VARIABLES:
        raise SFrameHeaderError(f"{VARIABLES_HEADER}: must be an object of at most {MAX_VARIABLES} entries")
    if not all(isinstance(k, str) and isinstance(v, str) and len(v) <= 512 for k, v in obj.items()):
        raise SFrameHeaderError(f"{VARIABLES_HEADER}: names and values must be strings (values <= 512 chars)")
    return dict(obj)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    org_id: str


class Unauthorized(Exception):
    """Raised by an `Authorize` callable; the message is returned to the client (one line, no secrets)."""


class AuthUnavailable(Exception):
    """Raised by an `Authorize` callable that cannot decide or record its decision (the audit log is
    down): the request is refused with 503, fail closed."""


Authorize = Callable[[web.Request], Principal | Awaitable[Principal]]


def static_bearer(token: str, *, org_id: str = "default", subject: str = "api-token") -> Authorize:
    """The configured static token (until real identities exist). Constant-time comparison."""
    if not token:
        raise ValueError("static bearer token must not be empty")
    expected = token.encode()

    def authorize(request: web.Request) -> Principal:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("missing bearer token")
        if not hmac.compare_digest(presented.strip().encode(), expected):
            raise Unauthorized("invalid token")
        return Principal(subject=subject, org_id=org_id)

    return authorize


@dataclass(frozen=True, slots=True)
class WhipLimits:
    max_body_bytes: int = 64 * 1024
    retry_after_s: int = 10
    body_timeout_s: float = 10.0  # the whole offer body must arrive within this
    delete_wait_s: float = 10.0  # DELETE waits this long for the call's summary (then answers anyway)
    max_tracks: int = 8  # media sections one offer may carry: each is a pipeline, a key and an object


SFrameHook = Callable[[CallSession, SFrameParams], Awaitable[None]]
# Called with the request and the new call's id once a call has started (the audit entry naming it); if it
# raises, the call is ended and the offer answered 503: a call nobody can account for does not run.
StartedHook = Callable[[web.Request, str], Awaitable[None]]


class SFrameHeaderError(ValueError):
    pass


def parse_sframe_headers(suite: str | None, keys: str | None) -> SFrameParams | None:
    """`Converse-SFrame-Suite: <n>` and `Converse-SFrame-Keys: <kid>=<base64url key>[, ...]`."""
    if suite is None and keys is None:
        return None
    if keys is None:
        raise SFrameHeaderError(f"{SFRAME_SUITE_HEADER} without {SFRAME_KEYS_HEADER}")
    number = SFRAME_DEFAULT_SUITE
    if suite is not None:
        text = suite.strip().lower()
        try:
            number = int(text, 16) if text.startswith("0x") else int(text)
        except ValueError:
            raise SFrameHeaderError(f"{SFRAME_SUITE_HEADER} is not a number") from None
        if number not in SFRAME_SUITES:
            raise SFrameHeaderError(f"unsupported SFrame suite {number}")
    parsed: dict[int, bytes] = {}
    for position, entry in enumerate(keys.split(","), start=1):
        kid_text, sep, key_text = entry.strip().partition("=")
        try:
            kid = int(kid_text)
            key = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
        except (ValueError, binascii.Error):
            raise SFrameHeaderError(f"{SFRAME_KEYS_HEADER}: bad entry {position}") from None
        if not sep or not key or not 0 <= kid < 2**64:
            raise SFrameHeaderError(f"{SFRAME_KEYS_HEADER}: bad entry {position}")
        if kid in parsed:
            raise SFrameHeaderError(f"{SFRAME_KEYS_HEADER}: duplicate kid {kid}")
        parsed[kid] = key
    return SFrameParams(suite=number, keys=parsed)


def _reason(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", headers=headers)


def _summary_json(summary: CallSummary) -> dict[str, object]:
    return {
        "call_id": summary.call_id,
        "status": summary.status,
        "reason": summary.reason,
        "tracks": summary.tracks,
        "frames_received": summary.frames_received,
        "frames_sealed": summary.frames_sealed,
        "frames_lost": summary.frames_lost,
        "utterances": summary.utterances,
        "duration_s": summary.duration_s,
    }


class WhipHandlers:
    def __init__(
        self,
        calls: Calls,
        *,
        authorize: Authorize,
        limits: WhipLimits | None = None,
        on_sframe: SFrameHook | None = None,
        on_started: StartedHook | None = None,
    ) -> None:
        self.calls = calls
        self.authorize = authorize
        self.limits = limits or WhipLimits()
        self.on_sframe = on_sframe
        self.on_started = on_started

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/whip", self.post),
            web.options("/whip", self.options),
            web.delete("/whip/{call_id}", self.delete),
            web.patch("/whip/{call_id}", self.patch),
            web.options("/whip/{call_id}", self.options_resource),
        ]

    async def _principal(self, request: web.Request) -> Principal:
        result = self.authorize(request)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _read_offer(self, request: web.Request) -> str | web.Response:
        limit = self.limits.max_body_bytes
        too_large = _reason(413, f"offer larger than {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            return too_large
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):  # a trickled body must not hold a handler
                async for chunk in request.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > limit:
                        return too_large
        except TimeoutError:
            return _reason(408, f"offer not received within {self.limits.body_timeout_s:g} s")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return _reason(400, "malformed SDP")

    def _unavailable(self, text: str) -> web.Response:
        return _reason(503, text, {"Retry-After": str(self.limits.retry_after_s)})

    async def post(self, request: web.Request) -> web.Response:
        try:
            principal = await self._principal(request)
        except Unauthorized as exc:
            return _reason(401, str(exc), {"WWW-Authenticate": "Bearer"})
        except AuthUnavailable as exc:
            return self._unavailable(str(exc))
        if request.content_type != SDP:
            return _reason(415, f"Content-Type must be {SDP}")
        if self.calls.draining:
            return self._unavailable("server is draining")
        offer = await self._read_offer(request)
        if isinstance(offer, web.Response):
            return offer
        sections = sum(1 for line in offer.splitlines() if line.startswith("m="))
        if sections > self.limits.max_tracks:
            return _reason(
                400, f"offer has {sections} media sections: at most {self.limits.max_tracks} per call"
            )
        try:
            sframe = parse_sframe_headers(
                request.headers.get(SFRAME_SUITE_HEADER), request.headers.get(SFRAME_KEYS_HEADER)
            )
            variables = parse_variables_header(request.headers.get(VARIABLES_HEADER))
        except SFrameHeaderError as exc:
            return _reason(400, str(exc))
        before_answer = None
        if sframe is not None:
            hook = self.on_sframe
            if hook is None:
                return _reason(400, "end-to-end encryption (SFrame) is not enabled on this worker")

            async def before_answer(session: CallSession) -> None:
                await hook(session, sframe)

        try:
            call, answer = await self.calls.start(
                offer, org_id=principal.org_id, variables=variables, before_answer=before_answer
            )
        except (OfferError, SFrameKeyError) as exc:
            return _reason(400, str(exc))
        except E2eeRequiredError as exc:
            return _reason(403, str(exc))
        except (DrainingError, AtCapacityError) as exc:
            return self._unavailable(str(exc))
        except Exception as exc:  # engine or aiortc failure during setup: the call was cleaned up
            log.error("whip_setup_failed", error=type(exc).__name__)
            return _reason(500, "call setup failed")
        if self.on_started is not None:
            try:
                await self.on_started(request, call.call_id)
            except Exception as exc:
                log.error("whip_start_hook_failed", call_id=call.call_id, error=type(exc).__name__)
                call.end("failed", "call start not recorded")
                return self._unavailable("call start could not be recorded")
        return web.Response(
            status=201,
            body=answer.encode(),
            headers={"Location": f"/whip/{call.call_id}", "Content-Type": SDP},
        )

    async def delete(self, request: web.Request) -> web.Response:
        try:
            principal = await self._principal(request)
        except Unauthorized as exc:
            return _reason(401, str(exc), {"WWW-Authenticate": "Bearer"})
        except AuthUnavailable as exc:
            return self._unavailable(str(exc))
        call_id = request.match_info["call_id"]
        call = self.calls.get(call_id)
        if call is None or call.org_id != principal.org_id:  # another org's call is as unknown as none
            return _reason(404, "unknown call")
        call.end("ended", HANGUP)
        summary = await call.wait_finished(self.limits.delete_wait_s)
        body = _summary_json(summary) if summary is not None else {"call_id": call_id, "status": "ending"}
        return web.Response(status=200, text=json.dumps(body), content_type="application/json")

    async def patch(self, request: web.Request) -> web.Response:
        return _reason(
            405,
            "trickle ICE (PATCH) is not supported: send an offer with all candidates",
            {"Allow": "DELETE, OPTIONS"},
        )

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": SDP})

    async def options_resource(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Allow": "DELETE, OPTIONS"})


def whip_routes(
    calls: Calls,
    *,
    authorize: Authorize,
    limits: WhipLimits | None = None,
    on_sframe: SFrameHook | None = None,
    on_started: StartedHook | None = None,
) -> list[web.RouteDef]:
    handlers = WhipHandlers(
        calls, authorize=authorize, limits=limits, on_sframe=on_sframe, on_started=on_started
    )
    return handlers.routes()


async def _demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "demo.html", headers={"Cache-Control": "no-store"})


async def _demo_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "demo.js", headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"}
    )


def demo_routes() -> list[web.RouteDef]:
    """`GET /demo` (the browser microphone page) and `GET /demo.js`."""
    return [web.get("/demo", _demo_page), web.get("/demo.js", _demo_script)]

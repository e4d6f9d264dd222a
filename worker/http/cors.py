"""CORS for browser callers on another origin: `/whip`, `/whip/<call_id>` and the admin API `/v1/`.

Only origins on the configured allow-list (`--cors-origins`, none by default) get CORS headers, each answer
naming that one origin (`Access-Control-Allow-Origin: https://app.example.org`, `Vary: Origin`), never `*`,
and never `Access-Control-Allow-Credentials`: callers authenticate with a bearer token in `Authorization`,
not cookies, so a page of another site cannot ride on a browser's session. Responses expose `Location`
(the WHIP resource), `Link` and `ETag` (settings' `If-Match`). A preflight (`OPTIONS` with
`Access-Control-Request-Method`) from an allowed origin is answered 204 before admission or authentication;
from any other origin it is 403 without CORS headers, so the browser refuses the request.

Headers are added in `on_response_prepare`, so error answers (401, 429, 503) and streamed ones (the live
view) carry them too: a page can read why it was refused.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

EXPOSED = "Location, Link, ETag, Retry-After"
ALLOWED_HEADERS = ", ".join(
    [
        "Authorization",
        "Content-Type",
        "If-Match",
        "Converse-Call-Variables",
        "Converse-SFrame-Suite",
        "Converse-SFrame-Keys",
    ]
)
MAX_AGE_S = 600
_ORIGIN_RE = re.compile(r"https?://[a-z0-9.-]+(?::\d{1,5})?|https?://\[[0-9a-f:.]+\](?::\d{1,5})?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """Origins as browsers send them (`scheme://host[:port]`, no path); `*` and anything else is refused."""
    out: set[str] = set()
    for position, raw in enumerate(values, start=1):
        origin = raw.strip().rstrip("/").lower()
        if _ORIGIN_RE.fullmatch(origin) is None:
            raise ValueError(
                f"cors-origins entry {position} is not an origin like https://app.example.org "
                "(scheme and host, optional port, no path, no wildcard)"
            )
        out.add(origin)
    return frozenset(out)


def _methods(path: str) -> str | None:
    if path == "/whip":
        return "POST, OPTIONS"
    if path.startswith("/whip/"):
        return "DELETE, PATCH, OPTIONS"
    if path.startswith("/v1/"):
        return "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    return None


class Cors:
    __slots__ = ("origins",)

    def __init__(self, origins: frozenset[str]) -> None:
        self.origins = origins

    def _allowed(self, request: web.Request) -> str | None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or _methods(request.path) is None:
            return None
        return origin if origin.lower() in self.origins else None

    def middleware(self) -> Middleware:
        @web.middleware
        async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
            methods = _methods(request.path)
            preflight = (
                request.method == hdrs.METH_OPTIONS
                and methods is not None
                and hdrs.ORIGIN in request.headers
                and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            )
            if not preflight:
                return await handler(request)
            origin = self._allowed(request)
            if origin is None:
                return web.Response(status=403, text="origin not allowed\n", content_type="text/plain")
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: methods or "",
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                    hdrs.ACCESS_CONTROL_MAX_AGE: str(MAX_AGE_S),
                },
            )

        return cors

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if _methods(request.path) is None:
            return
        response.headers.add(hdrs.VARY, hdrs.ORIGIN)  # caches keep one answer per origin
        origin = self._allowed(request)
        if origin is None:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED
        response.headers.pop(hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS, None)

"""The admin API under `/v1/`: every route's typed description (`worker.http.api.model.Route`), by group.

`API` is what `api_routes` registers and what `worker.http.openapi` documents; `worker.http.auth
.auth_middleware(ctx)` must wrap the app (it authenticates, keeps the principal and the context on the
request, and audits). Each handler lives in a small module by topic:

- `worker.http.api.settings`: settings, KEK rotation, retention run
- `worker.http.api.calls`: calls (list, detail), stored transcripts
- `worker.http.api.recording`: recording export
- `worker.http.api.escalation`: escalation (mark, queue, claim, release)
- `worker.http.api.live`: the live view (SSE)
- `worker.http.api.e2ee_keys`: SFrame key provisioning
- `worker.http.api.audit`: audit log, analytics
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from worker.app_context import AppContext
from worker.http.api import audit, calls, e2ee_keys, escalation, live, recording, settings
from worker.http.api.model import Route

API: Final[tuple[Route, ...]] = (
    *settings.ROUTES,
    *calls.ROUTES,
    *recording.ROUTES,
    *escalation.ROUTES,
    *live.ROUTES,
    *e2ee_keys.ROUTES,
    *audit.ROUTES,
)


def api_routes(ctx: AppContext) -> list[web.RouteDef]:
    """The `/v1/` routes. Handlers reach `ctx` through the request (set by `auth_middleware(ctx)`), so the
    middleware is required: without it every route answers 401."""
    del ctx  # the middleware carries it; the parameter keeps the assembly explicit
    return [route.route_def() for route in API]

"""The admin API under `/v1/`: every route, assembled for `worker.http.app`.

`api_routes(ctx)` returns the route table; `worker.http.auth.auth_middleware(ctx)` must wrap the app (it
authenticates, keeps the principal and the context on the request, and audits);
`worker.http.openapi.openapi_spec()`
describes it all. Each handler lives in a small module by topic:

- `worker.http.api.settings`: settings, KEK rotation, retention run
- `worker.http.api.calls`: calls (list, detail), stored transcripts
- `worker.http.api.recording`: recording export
- `worker.http.api.live`: escalation, the live view (SSE), SFrame key provisioning
- `worker.http.api.audit`: audit log, analytics
"""

from __future__ import annotations

from aiohttp import web

from worker.app_context import AppContext
from worker.http.api import audit as api_audit
from worker.http.api import calls as api_calls
from worker.http.api import live as api_live
from worker.http.api import recording as api_recording
from worker.http.api import settings as api_settings
from worker.http.auth import auth_middleware
from worker.http.openapi import openapi_spec

__all__ = ["api_routes", "auth_middleware", "openapi_spec"]


def api_routes(ctx: AppContext) -> list[web.RouteDef]:
    """The `/v1/` routes. Handlers reach `ctx` through the request (set by `auth_middleware(ctx)`), so the
    middleware is required: without it every route answers 401."""
    del ctx  # the middleware carries it; the parameter keeps the assembly explicit
    return [
        *api_settings.routes(),
        *api_calls.routes(),
        *api_recording.routes(),
        *api_live.routes(),
        *api_audit.routes(),
    ]

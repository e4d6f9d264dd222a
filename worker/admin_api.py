"""The admin API under `/v1/`: every route, assembled for `worker.http_app`.

`api_routes(ctx)` returns the route table; `worker.http_auth.auth_middleware(ctx)` must wrap the app (it
authenticates, keeps the principal and the context on the request, and audits);
`worker.openapi.openapi_spec()`
describes it all. Each handler lives in a small module by topic:

- `worker.api_settings`: settings, KEK rotation, retention run
- `worker.api_calls`: calls (list, detail), stored transcripts
- `worker.api_recording`: recording export
- `worker.api_live`: escalation, the live view (SSE), SFrame key provisioning
- `worker.api_audit`: audit log, analytics
"""

from __future__ import annotations

from aiohttp import web

from worker import api_audit, api_calls, api_live, api_recording, api_settings
from worker.app_context import AppContext
from worker.http_auth import auth_middleware
from worker.openapi import openapi_spec

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

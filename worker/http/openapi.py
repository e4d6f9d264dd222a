"""The OpenAPI 3.1 description of the worker's HTTP interface (served as `/openapi.json`).

The `/v1/` operations and their body schemas come from the routes' typed descriptions
(`worker.http.api.routes.API`): each names the permission it needs in `x-permission` (and `x-mfa` when it
reads PHI, from `worker.auth.access`); `docs/api.md` shows the same table
(`python -m worker.http.openapi docs/api.md` rewrites it).
"""

from __future__ import annotations

import sys
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from worker import docsync
from worker.auth.access import PHI_PERMISSIONS, Permission
from worker.http.api import schemas
from worker.http.api.model import CALL_ID, Media, Route, Schema
from worker.http.api.routes import API

JSON: Final = "application/json"
REF: Final = "#/components/schemas/{model}"

_ERRORS: Final = {
    400: "Invalid id, parameter or body",
    401: "Missing, invalid or expired bearer token",
    403: "The caller's role lacks the permission, or `mfa` is missing for a PHI read",
    404: "No such resource in the caller's organisation",
    409: "Conflict: state does not allow it, or stored data failed an integrity check",
    413: "Request body too large",
    415: "Request body must be application/json",
    501: "Not supported by this worker yet",
    503: "Unavailable: draining, overloaded, or the audit log cannot be written",
}
_STATUS: Final = {200: "OK", 201: "Created"}


def ref(model: type[BaseModel]) -> Schema:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": ref(model)}}}


def _operation(route: Route) -> Schema:
    """One `/v1/` operation, all of it from the route's typed description."""
    ok = route.response
    responses: dict[str, Schema] = {
        str(route.status): {"description": ok.description, "content": ok.content}
        if isinstance(ok, Media)
        else _json(ok, _STATUS[route.status])
    }
    for code in (401, 403, *route.errors):
        responses[str(code)] = _json(schemas.Error, _ERRORS[code])
    op: Schema = {"operationId": route.operation_id, "summary": route.summary, "responses": responses}
    if route.params:
        op["parameters"] = list(route.params)
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(route.body)}}}
    op["x-permission"] = route.permission.value
    op["x-mfa"] = route.permission in PHI_PERMISSIONS
    return op


def _v1_paths() -> dict[str, dict[str, Schema]]:
    paths: dict[str, dict[str, Schema]] = {}
    for route in API:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return paths


def _components() -> dict[str, Schema]:
    """Every type the routes name (and those the other paths use), as JSON Schema 2020-12."""
    models: set[type[BaseModel]] = {schemas.Error, schemas.Health, schemas.Readiness}
    for route in API:
        models.update(m for m in (route.body, route.response) if isinstance(m, type))
    ordered = sorted(models, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    return {name: _untitled(schema) for name, schema in sorted(defs.get("$defs", {}).items())}


def _untitled(schema: Any, in_properties: bool = False) -> Any:
    """`schema` without pydantic's generated titles (the names say it); a property called `title` stays."""
    if isinstance(schema, dict):
        return {
            k: _untitled(v, k == "properties" and not in_properties)
            for k, v in schema.items()
            if in_properties or k != "title"
        }
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema


def _other_paths() -> dict[str, dict[str, Schema]]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    sdp = {"application/sdp": {"schema": {"type": "string"}}}
    plain_err = {"description": "One-line reason", "content": text}
    return {
        "/whip": {
            "post": {
                "operationId": "whipOffer",
                "summary": "WHIP (RFC 9725): send an SDP offer, get the answer; the call starts",
                "x-permission": Permission.CONFIGURE_AGENTS.value,  # worker.http.app._whip_authorizer
                "x-mfa": False,
                "requestBody": {"required": True, "content": sdp},
                "responses": {
                    "201": {
                        "description": "SDP answer",
                        "content": sdp,
                        "headers": {
                            "Location": {"schema": {"type": "string"}, "description": "/whip/{call_id}"}
                        },
                    },
                    **{code: plain_err for code in ("400", "401", "413", "415", "503")},
                },
            }
        },
        "/whip/{call_id}": {
            "delete": {
                "operationId": "whipEnd",
                "summary": "End the call",
                "x-permission": Permission.CONFIGURE_AGENTS.value,
                "x-mfa": False,
                "parameters": [CALL_ID],
                "responses": {
                    "200": {"description": "Call ended"},
                    **{code: plain_err for code in ("401", "404")},
                },
            }
        },
        "/media-streams": {
            "get": {
                "operationId": "mediaStreams",
                "summary": "Media Streams WebSocket (telephony, 8 kHz mu-law); the call starts",
                "x-permission": Permission.CONFIGURE_AGENTS.value,  # worker.telephony.media_streams
                "x-mfa": False,
                "security": [],  # the token travels in the URL or the stream's start message, not a header
                "parameters": [
                    {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {
                    "101": {"description": "WebSocket: connected, start, media, mark, stop (docs/api.md)"},
                    **{code: plain_err for code in ("401", "403", "429", "503")},
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": {"description": "Alive", "content": {JSON: {"schema": ref(schemas.Health)}}}
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness (503 while draining)",
                "security": [],
                "responses": {
                    "200": _json(schemas.Readiness, "Ready"),
                    "503": {
                        "description": "Not ready",
                        "content": {JSON: {"schema": ref(schemas.Readiness)}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (no PHI in labels)",
                "security": [],
                "responses": {"200": {"description": "Prometheus text format", "content": text}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}
                },
            }
        },
    }


def openapi_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Converse media worker",
            "version": "1",
            "description": "WHIP ingest, health, metrics, and the admin API under /v1/. Every /v1/ call "
            "needs a bearer token; each is checked against the role table (worker.auth.access) and audited.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {**_v1_paths(), **_other_paths()},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": _components(),
        },
    }


def render_markdown() -> str:
    """The `/v1/` endpoint table for docs/api.md."""
    lines = ["| method | path | permission | needs `mfa` | what |", "|---|---|---|:-:|---|"]
    for path, ops in openapi_spec()["paths"].items():
        for method, op in ops.items():
            perm = op.get("x-permission")
            mfa = "yes" if op.get("x-mfa") else "-"
            what = op["summary"].split(":")[0] if perm == "live_view_claimed" else op["summary"]
            auth = f"`{perm}`" if perm else ("bearer token" if op.get("security") != [] else "none")
            lines.append(f"| {method.upper()} | `{path}` | {auth} | {mfa if perm else '-'} | {what} |")
    return "\n".join(lines) + "\n"


DOC: Final = docsync.Block("worker.http.openapi", "docs/api.md", render_markdown)
BEGIN_MARK, END_MARK, sync_doc, main = DOC.begin, docsync.END_MARK, DOC.sync, DOC.main


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

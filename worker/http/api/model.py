"""The typed model of the admin API: one `Route` per operation, the single source of its method and path,
handler, permission, request and response body types, parameters, errors and summary.

From the routes: `worker.http.api.routes` registers the handlers, `worker.http.openapi` writes the OpenAPI
document (and the docs table), `worker.http.auth.authorize` checks the route's permission, and `parse_body`
validates a request body against the route's body type. Body types are pydantic models (`Body`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from worker.auth.access import Permission

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Body(BaseModel):
    """A JSON object of the API, request or response: no other properties, and (request bodies carry key
    material) never the input in an error."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


class OpenBody(Body):
    """A response object that may grow properties."""

    model_config = ConfigDict(extra="allow")


B = TypeVar("B", bound=BaseModel)


def parse_body(model: type[B], value: object) -> B:
    """`value` as `model`; a one-line ValueError with the first problem (the validators' own messages)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise ValueError(errors[0]["msg"] if errors else "invalid body") from None


@dataclass(frozen=True, slots=True)
class Media:
    """A response that is not a JSON object (a recording, an event stream): its OpenAPI `content`."""

    description: str
    content: Schema


Response = type[BaseModel] | Media


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    permission: Permission
    response: Response
    status: int = 200
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # beyond 401 and 403, which every /v1/ route may answer
    params: tuple[Schema, ...] = ()

    def route_def(self) -> web.RouteDef:
        async def handle(request: web.Request) -> web.StreamResponse:
            request[ROUTE] = self  # what `authorize` checks: this route's permission
            return await self.handler(request)

        return web.route(self.method, self.path, handle)


ROUTE: Final = web.RequestKey("converse_api_route", Route)


# The errors a route with a JSON request body may answer.
BODY_ERRORS: Final = (400, 413, 415, 503)


def path_param(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


CALL_ID: Final = path_param("call_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
TRACK: Final = path_param("track", {"type": "integer", "minimum": 0, "maximum": 1023})

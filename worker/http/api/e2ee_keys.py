"""Admin API: E2EE SFrame key provisioning for an active call. Never logs or audits key bytes."""

from __future__ import annotations

import base64
import binascii
import inspect
from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from worker.auth.access import Permission
from worker.http.api import schemas
from worker.http.api.calls import active_call, call_id_of, call_resource
from worker.http.api.model import BODY_ERRORS, CALL_ID, Body, Route, parse_body
from worker.http.auth import ApiError, authorize, precheck, read_json

SFRAME_SUITES: Final = range(1, 6)  # RFC 9605 section 4.5


MAX_SFRAME_KEYS: Final = 16


SFRAME_KEY_BYTES: Final = range(16, 65)


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


class SFrameKeys(Body):
    """A participant's SFrame keys for an active call: `{kid: base64url key}` under one suite."""

    suite: Annotated[int, Field(ge=1, le=5)] = 4  # RFC 9605 section 4.5; 4 = AES_128_GCM_SHA256_128
    keys: Annotated[
        dict[str, str],
        WithJsonSchema(
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_SFRAME_KEYS,
                "propertyNames": {"pattern": "^[0-9]{1,20}$"},
                "additionalProperties": {"type": "string", "pattern": "^[A-Za-z0-9_-]+={0,2}$"},
            }
        ),
    ]

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the type check answers
        try:
            _parse_keys(data)
        except ValueError as exc:  # the messages name positions and kids, never key bytes
            raise PydanticCustomError("invalid_sframe_keys", "{message}", {"message": str(exc)}) from None
        return data

    def decoded(self) -> dict[int, bytes]:
        return _parse_keys({"suite": self.suite, "keys": self.keys})[1]


async def sframe_keys(request: web.Request) -> web.Response:
    """Never logs or audits key bytes: the audit entry names the suite and the kids only."""
    await precheck(request, call_resource(request, "/sframe-keys"), org=None)
    call_id = call_id_of(request)
    body = await read_json(request)
    try:
        update = parse_body(SFrameKeys, body)
        suite, keys, error = update.suite, update.decoded(), None
    except ValueError as exc:
        suite, keys, error = 0, {}, str(exc)
    call = active_call(request, call_id)
    await authorize(
        request,
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


ROUTES: Final = (
    Route(
        "POST",
        "/v1/calls/{call_id}/sframe-keys",
        sframe_keys,
        "provisionSFrameKeys",
        "Give an active call a participant's SFrame keys (E2EE)",
        Permission.CONFIGURE_SECURITY,
        schemas.SFrameKeysAccepted,
        body=SFrameKeys,
        errors=(*BODY_ERRORS, 404, 501),
        params=(CALL_ID,),
    ),
)

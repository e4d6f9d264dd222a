"""Admin API: the organisation's security settings, KEK rotation, and a retention run.

Settings are the HIPAA page's Settings -> Security: PHI protection, end-to-end encryption, call recording,
retention period. A PUT may change any subset; its audit entry carries the values before and after.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from aiohttp import web
from pydantic import ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from storage.protocols import OrgSettings
from storage.retention import run_retention
from worker import key_rotation
from worker.auth.access import Permission
from worker.http.api import schemas
from worker.http.api.model import BODY_ERRORS, Body, Route, parse_body
from worker.http.auth import authorize, ctx_of, precheck, principal_of, read_json, record, reject

MAX_RETENTION_DAYS: Final = 36500
_BOOL_FIELDS: Final = ("phi_protection", "e2ee_required", "recording_enabled")
SETTINGS_FIELDS: Final = (*_BOOL_FIELDS, "retention_days")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_setting", "{message}", {"message": message})  # no template braces


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# Absent: unchanged. The wire type is a boolean (null is refused), so the schema has no null default.
_Switch = Annotated[bool | None, WithJsonSchema({"type": "boolean"}), Field(json_schema_extra=_no_default)]


class SettingsUpdate(Body):
    """The settings a PUT changes (at least one); `retention_days: null` keeps calls forever."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    phi_protection: _Switch = None
    e2ee_required: _Switch = None
    recording_enabled: _Switch = None
    retention_days: Annotated[int | None, Field(ge=1, le=MAX_RETENTION_DAYS)] = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(SETTINGS_FIELDS))
            if unknown:
                raise _invalid(f"unknown setting {unknown[0][:40]!r}; settable: {', '.join(SETTINGS_FIELDS)}")
            if not data:
                raise _invalid(f"no setting given; settable: {', '.join(SETTINGS_FIELDS)}")
        return data

    @field_validator(*_BOOL_FIELDS, mode="before")
    @classmethod
    def _switch(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, bool):
            raise _invalid(f"{info.field_name} must be true or false")
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _days(cls, days: Any) -> Any:
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            raise _invalid(f"retention_days must be null or an integer from 1 to {MAX_RETENTION_DAYS}")
        return days


def settings_json(s: OrgSettings) -> dict[str, Any]:
    return schemas.Settings(**{name: getattr(s, name) for name in schemas.Settings.model_fields}).model_dump()


def _values(s: OrgSettings) -> dict[str, Any]:
    return {name: getattr(s, name) for name in SETTINGS_FIELDS}


def apply_changes(current: OrgSettings, body: dict[str, Any]) -> OrgSettings:
    """`current` with the fields of `body` applied; one-line ValueError on anything else."""
    changes = parse_body(SettingsUpdate, body).model_dump(exclude_unset=True)
    return replace(current, **changes, updated_at=None)


async def get_settings(request: web.Request) -> web.Response:
    p = principal_of(request)
    await authorize(request, "settings", org=p.org_id)
    return web.json_response(settings_json(await ctx_of(request).stores.transcripts.get_settings(p.org_id)))


async def put_settings(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await precheck(request, "settings", org=p.org_id)
    body = await read_json(request)
    store = ctx.stores.transcripts
    current = await store.get_settings(p.org_id)
    try:
        wanted, invalid = apply_changes(current, body), None
    except ValueError as exc:
        wanted, invalid = None, str(exc)
    await authorize(  # an invalid body is audited too, with what the settings were
        request,
        "settings",
        org=p.org_id,
        before=_values(current),
        after=None if wanted is None else _values(wanted),
        details=None if wanted is not None else {"invalid": True},
    )
    if wanted is None:
        reject(400, str(invalid))
    stored = await store.put_settings(wanted)
    return web.json_response(settings_json(stored))


async def rotate_keys(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    kek_id, version = await asyncio.to_thread(ctx.keys.current)
    await authorize(
        request,
        "keys/kek",
        org=ctx.org_id,
        before={"kek_id": kek_id, "version": version},
    )
    # Every kind the KEK wraps (track, transcript text, TOTP); the answer gives totals, the audit per kind.
    report = await key_rotation.rotate(ctx.keys, ctx.stores.transcripts, ctx.security.totp)
    new_version = report.version
    full = key_rotation.report_json(report)
    result = {k: full[k] for k in ("kek_id", "version", "rewrapped", "unchanged", "skipped")}
    await record(
        request,
        "keys.rotated",
        "keys/kek",
        before={"kek_id": kek_id, "version": version},
        after={"kek_id": report.kek_id, "version": new_version},
        details=full,
    )
    return web.json_response(result)


async def retention_run(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await authorize(request, "retention", org=ctx.org_id)
    report = await run_retention(
        ctx.stores.transcripts,
        ctx.stores.recordings,
        datetime.now(UTC),
        audit=ctx.security.audit.record_system,
    )
    result = {
        "deleted_calls": len(report.deleted_calls),
        "keys_destroyed": report.keys_destroyed,
        "text_keys_destroyed": report.text_keys_destroyed,
        "failed": len(report.failed),
        "cutoffs": report.cutoffs,
    }
    await record(request, "retention.run", "retention", details=result)
    return web.json_response(result)


ROUTES: Final = (
    Route(
        "GET",
        "/v1/settings",
        get_settings,
        "getSettings",
        "The organisation's security settings",
        Permission.READ_SETTINGS,
        schemas.Settings,
    ),
    Route(
        "PUT",
        "/v1/settings",
        put_settings,
        "putSettings",
        "Change security settings (audited with before and after values)",
        Permission.CONFIGURE_SECURITY,
        schemas.Settings,
        body=SettingsUpdate,
        errors=BODY_ERRORS,
    ),
    Route(
        "POST",
        "/v1/keys/rotate",
        rotate_keys,
        "rotateKeys",
        "Rotate the KEK and re-wrap every track key",
        Permission.MANAGE_KEYS,
        schemas.KeyRotation,
    ),
    Route(
        "POST",
        "/v1/retention/run",
        retention_run,
        "runRetention",
        "Delete calls past their retention period now",
        Permission.RUN_RETENTION,
        schemas.RetentionRun,
    ),
)

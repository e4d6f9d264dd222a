"""Admin API: the organisation's security settings, KEK rotation, and a retention run.

Settings are the HIPAA page's Settings -> Security: PHI protection, end-to-end encryption, call recording,
retention period. A PUT may change any subset; its audit entry carries the values before and after.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from storage.protocols import OrgSettings
from storage.retention import run_retention
from worker import key_rotation
from worker.auth.access import Permission
from worker.http.auth import authorize, ctx_of, precheck, principal_of, read_json, record, reject

MAX_RETENTION_DAYS: Final = 36500
_BOOL_FIELDS: Final = ("phi_protection", "e2ee_required", "recording_enabled")
SETTINGS_FIELDS: Final = (*_BOOL_FIELDS, "retention_days")


def settings_json(s: OrgSettings) -> dict[str, Any]:
    return {
        "org_id": s.org_id,
        "phi_protection": s.phi_protection,
        "e2ee_required": s.e2ee_required,
        "recording_enabled": s.recording_enabled,
        "retention_days": s.retention_days,
        "updated_at": s.updated_at,
    }


def _values(s: OrgSettings) -> dict[str, Any]:
    return {name: getattr(s, name) for name in SETTINGS_FIELDS}


def apply_changes(current: OrgSettings, body: dict[str, Any]) -> OrgSettings:
    """`current` with the fields of `body` applied; one-line ValueError on anything else."""
    unknown = sorted(set(body) - set(SETTINGS_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0][:40]!r}; settable: {', '.join(SETTINGS_FIELDS)}")
    if not body:
        raise ValueError(f"no setting given; settable: {', '.join(SETTINGS_FIELDS)}")
    changes: dict[str, Any] = {}
    for name in _BOOL_FIELDS:
        if name in body:
            if not isinstance(body[name], bool):
                raise ValueError(f"{name} must be true or false")
            changes[name] = body[name]
    if "retention_days" in body:
        days = body["retention_days"]
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            raise ValueError(f"retention_days must be null or an integer from 1 to {MAX_RETENTION_DAYS}")
        changes["retention_days"] = days
    return replace(current, **changes, updated_at=None)


async def get_settings(request: web.Request) -> web.Response:
    p = principal_of(request)
    await authorize(request, Permission.READ_SETTINGS, "settings", org=p.org_id)
    return web.json_response(settings_json(await ctx_of(request).stores.transcripts.get_settings(p.org_id)))


async def put_settings(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await precheck(request, Permission.CONFIGURE_SECURITY, "settings", org=p.org_id)
    body = await read_json(request)
    store = ctx.stores.transcripts
    current = await store.get_settings(p.org_id)
    try:
        wanted, invalid = apply_changes(current, body), None
    except ValueError as exc:
        wanted, invalid = None, str(exc)
    await authorize(  # an invalid body is audited too, with what the settings were
        request,
        Permission.CONFIGURE_SECURITY,
        "settings",
        org=p.org_id,
        before=_values(current),
        after=None if wanted is None else _values(wanted),
        details=None if wanted is not None else {"invalid": True},
    )
    if wanted is None:
        reject(400, invalid or "invalid settings")
    stored = await store.put_settings(wanted)
    return web.json_response(settings_json(stored))


async def rotate_keys(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    kek_id, version = await asyncio.to_thread(ctx.keys.current)
    await authorize(
        request,
        Permission.MANAGE_KEYS,
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
    await authorize(request, Permission.RUN_RETENTION, "retention", org=ctx.org_id)
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


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/settings", get_settings),
        web.put("/v1/settings", put_settings),
        web.post("/v1/keys/rotate", rotate_keys),
        web.post("/v1/retention/run", retention_run),
    ]

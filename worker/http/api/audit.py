"""Admin API: the audit log (read, verify, checkpoint, inclusion proofs) and the analytics aggregates.

The audit log is the pod's: only members of the pod's organisation (`ctx.org_id`) reach it. No endpoint
changes or deletes an entry.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from storage.audit import AuditError, AuditTamperedError
from storage.audit_store import MAX_PAGE
from worker.auth.access import Permission
from worker.calls.analytics import org_analytics
from worker.http.api import schemas
from worker.http.api.model import Route, query
from worker.http.auth import ApiError, authorize, ctx_of, principal_of

DEFAULT_PAGE: Final = 100
_MAX_SEQ: Final = 2**53  # JSON-safe integers only


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 16 or not lo <= int(raw) <= hi:
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


async def read_audit(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    since = _int_param(request, "since", 0, 0, _MAX_SEQ)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    await authorize(request, "audit", org=ctx.org_id, details={"since": since, "limit": limit})
    entries = await ctx.security.audit.entries(since, limit)
    last = entries[-1].get("seq") if entries else None
    return web.json_response({"entries": entries, "next_since": last if isinstance(last, int) else since})


async def verify_audit(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await authorize(request, "audit", org=ctx.org_id)
    findings = await ctx.security.audit.verify()
    rows = [
        {"kind": f.kind, "message": f.message, "seq": f.seq, "checkpoint": f.checkpoint} for f in findings
    ]
    return web.json_response({"ok": not findings, "findings": rows})


async def checkpoint(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await authorize(request, "audit/checkpoints", org=ctx.org_id)
    try:
        cp = await ctx.security.audit.checkpoint()
    except AuditTamperedError as exc:
        raise ApiError(409, f"audit log tampered: {exc}") from None
    return web.json_response(cp, status=201)


async def proof(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    raw = request.match_info.get("seq", "")
    if not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= _MAX_SEQ:
        raise ApiError(400, "seq must be a positive integer")
    seq = int(raw)
    await authorize(request, f"audit/{seq}", org=ctx.org_id)
    try:
        result = await ctx.security.audit.inclusion_proof(seq)
    except AuditError as exc:
        if str(exc).startswith("no audit entry"):
            raise ApiError(404, str(exc)) from None
        raise ApiError(409, f"audit log: {exc}") from None
    return web.json_response({**result.to_json(), "verified": result.verify()})


async def analytics(request: web.Request) -> web.Response:
    ctx, p = ctx_of(request), principal_of(request)
    await authorize(request, "analytics", org=p.org_id)
    result = await org_analytics(ctx.stores.transcripts, p.org_id)
    return web.json_response(result.to_json())


ROUTES: Final = (
    Route(
        "GET",
        "/v1/audit",
        read_audit,
        "readAudit",
        "Audit entries after `since`, oldest first",
        Permission.READ_AUDIT,
        schemas.AuditPage,
        errors=(400,),
        params=(
            query("since", {"type": "integer", "minimum": 0, "default": 0}),
            query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}),
        ),
    ),
    Route(
        "GET",
        "/v1/audit/verify",
        verify_audit,
        "verifyAudit",
        "Recompute the Merkle tree and check checkpoints",
        Permission.VERIFY_AUDIT,
        schemas.AuditVerify,
    ),
    Route(
        "POST",
        "/v1/audit/checkpoint",
        checkpoint,
        "checkpointAudit",
        "Write a signed checkpoint now",
        Permission.VERIFY_AUDIT,
        schemas.Checkpoint,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/v1/audit/proof/{seq}",
        proof,
        "auditProof",
        "RFC 9162 inclusion proof of one entry",
        Permission.READ_AUDIT,
        schemas.InclusionProof,
        errors=(400, 404, 409),
        params=(
            {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
        ),
    ),
    Route(
        "GET",
        "/v1/analytics",
        analytics,
        "analytics",
        "Aggregates for the organisation (no ids, no text)",
        Permission.READ_ANALYTICS,
        schemas.Analytics,
    ),
)

"""The OpenAPI 3.1 description of the worker's HTTP interface (served as `/openapi.json`).

Every `/v1/` operation names the permission it needs in `x-permission` (and `x-mfa` when it reads PHI), from
`worker.auth.access`; `docs/api.md` shows the same table (`python -m worker.http.openapi docs/api.md`
rewrites it).
"""

from __future__ import annotations

import sys
from typing import Any, Final

from worker import docsync
from worker.auth.access import PHI_PERMISSIONS, Permission
from worker.http.api.schemas import SCHEMAS, Schema, ref

P = Permission
JSON: Final = "application/json"

_ERRORS: Final = {
    "400": "Invalid id, parameter or body",
    "401": "Missing, invalid or expired bearer token",
    "403": "The caller's role lacks the permission, or `mfa` is missing for a PHI read",
    "404": "No such resource in the caller's organisation",
    "409": "Conflict: state does not allow it, or stored data failed an integrity check",
    "413": "Request body too large",
    "415": "Request body must be application/json",
    "501": "Not supported by this worker yet",
    "503": "Unavailable: draining, overloaded, or the audit log cannot be written",
}

CALL_ID: Final = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
TRACK: Final = {
    "name": "track",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 1023},
}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


def _op(
    op_id: str,
    summary: str,
    permission: Permission | None,
    ok: dict[str, Schema],
    errors: tuple[str, ...] = (),
    params: tuple[Schema, ...] = (),
    body: str | None = None,
    secured: bool = True,
) -> Schema:
    responses: dict[str, Schema] = dict(ok)
    codes = (*(("401", "403") if secured else ()), *errors)
    for code in codes:
        responses[code] = _json("Error", _ERRORS[code])
    op: Schema = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    if not secured:
        op["security"] = []
    if permission is not None:
        op["x-permission"] = permission.value
        op["x-mfa"] = permission in PHI_PERMISSIONS
    return op


_DEFAULT_STATUS: Final = {"201": "Created", "200": "OK"}


def _ok(schema: str, status: str = "200") -> dict[str, Schema]:
    return {status: _json(schema, _DEFAULT_STATUS[status])}


def _v1_paths() -> dict[str, dict[str, Schema]]:
    body_errs = ("400", "413", "415", "503")
    return {
        "/v1/settings": {
            "get": _op(
                "getSettings", "The organisation's security settings", P.READ_SETTINGS, _ok("Settings")
            ),
            "put": _op(
                "putSettings",
                "Change security settings (audited with before and after values)",
                P.CONFIGURE_SECURITY,
                _ok("Settings"),
                body_errs,
                body="SettingsUpdate",
            ),
        },
        "/v1/calls": {
            "get": _op(
                "listCalls", "Calls of the organisation (metadata only)", P.LIST_CALLS, _ok("CallList")
            )
        },
        "/v1/calls/{call_id}": {
            "get": _op(
                "getCall",
                "One call: metadata, tracks, redaction counts (no text)",
                P.LIST_CALLS,
                _ok("CallDetail"),
                ("400", "404"),
                (CALL_ID,),
            )
        },
        "/v1/calls/{call_id}/transcript": {
            "get": _op(
                "getTranscript",
                "The stored, redacted transcript",
                P.READ_TRANSCRIPTS,
                _ok("Transcript"),
                ("400", "404"),
                (CALL_ID,),
            )
        },
        "/v1/calls/{call_id}/tracks/{track}/recording": {
            "get": _op(
                "exportRecording",
                "Unseal and download one track's recording (Ogg Opus or WAV)",
                P.EXPORT_RECORDINGS,
                {
                    "200": {
                        "description": "The recording",
                        "content": {
                            "audio/ogg": {"schema": {"type": "string", "contentMediaType": "audio/ogg"}},
                            "audio/wav": {"schema": {"type": "string", "contentMediaType": "audio/wav"}},
                        },
                    }
                },
                ("400", "404", "409"),
                (
                    CALL_ID,
                    TRACK,
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["ogg", "wav"], "default": "ogg"},
                    },
                ),
            )
        },
        "/v1/calls/{call_id}/escalate": {
            "post": _op(
                "escalateCall",
                "Mark an active call escalated",
                P.ESCALATE_CALL,
                _ok("Escalation", "201"),
                ("400", "404", "409"),
                (CALL_ID,),
            )
        },
        "/v1/escalations": {
            "get": _op(
                "listEscalations",
                "Escalated active calls (ids and state only)",
                P.LIST_ESCALATED,
                _ok("EscalationList"),
            )
        },
        "/v1/calls/{call_id}/claim": {
            "post": _op(
                "claimCall",
                "Claim an escalated call",
                P.CLAIM_ESCALATED,
                _ok("Escalation"),
                ("400", "404", "409"),
                (CALL_ID,),
            )
        },
        "/v1/calls/{call_id}/release": {
            "post": _op(
                "releaseCall",
                "Release a claimed call",
                P.CLAIM_ESCALATED,
                _ok("Escalation"),
                ("400", "404", "409"),
                (CALL_ID,),
            )
        },
        "/v1/calls/{call_id}/live": {
            "get": _op(
                "liveView",
                "Server-Sent Events of the call's live transcript (unredacted, memory only): `event: "
                "partial|final` with data {track, text, start, end}, then `event: ended` with {call_id, "
                "reason}. Callers without read_transcripts must hold the call's claim.",
                P.LIVE_VIEW_CLAIMED,
                {
                    "200": {
                        "description": "An event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                ("400", "404", "503"),
                (CALL_ID,),
            )
        },
        "/v1/calls/{call_id}/sframe-keys": {
            "post": _op(
                "provisionSFrameKeys",
                "Give an active call a participant's SFrame keys (E2EE)",
                P.CONFIGURE_SECURITY,
                _ok("SFrameKeysAccepted"),
                (*body_errs, "404", "501"),
                (CALL_ID,),
                body="SFrameKeys",
            )
        },
        "/v1/analytics": {
            "get": _op(
                "analytics",
                "Aggregates for the organisation (no ids, no text)",
                P.READ_ANALYTICS,
                _ok("Analytics"),
            )
        },
        "/v1/audit": {
            "get": _op(
                "readAudit",
                "Audit entries after `since`, oldest first",
                P.READ_AUDIT,
                _ok("AuditPage"),
                ("400",),
                (
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    },
                ),
            )
        },
        "/v1/audit/verify": {
            "get": _op(
                "verifyAudit",
                "Recompute the Merkle tree and check checkpoints",
                P.VERIFY_AUDIT,
                _ok("AuditVerify"),
            )
        },
        "/v1/audit/checkpoint": {
            "post": _op(
                "checkpointAudit",
                "Write a signed checkpoint now",
                P.VERIFY_AUDIT,
                _ok("Checkpoint", "201"),
                ("409",),
            )
        },
        "/v1/audit/proof/{seq}": {
            "get": _op(
                "auditProof",
                "RFC 9162 inclusion proof of one entry",
                P.READ_AUDIT,
                _ok("InclusionProof"),
                ("400", "404", "409"),
                (
                    {
                        "name": "seq",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ),
            )
        },
        "/v1/keys/rotate": {
            "post": _op(
                "rotateKeys", "Rotate the KEK and re-wrap every track key", P.MANAGE_KEYS, _ok("KeyRotation")
            )
        },
        "/v1/retention/run": {
            "post": _op(
                "runRetention",
                "Delete calls past their retention period now",
                P.RUN_RETENTION,
                _ok("RetentionRun"),
            )
        },
    }


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
                "x-permission": Permission.CONFIGURE_AGENTS.value,  # worker.media_streams
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
                "responses": {"200": {"description": "Alive", "content": {JSON: {"schema": ref("Health")}}}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness (503 while draining)",
                "security": [],
                "responses": {
                    "200": {"description": "Ready", "content": {JSON: {"schema": ref("Readiness")}}},
                    "503": {"description": "Not ready", "content": {JSON: {"schema": ref("Readiness")}}},
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
            "schemas": SCHEMAS,
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


BEGIN_MARK: Final = docsync.begin_mark("worker.http.openapi", "docs/api.md")
END_MARK: Final = docsync.END_MARK


def sync_doc(text: str) -> str:
    """`text` with the generated block replaced by `render_markdown()`."""
    return docsync.sync(text, BEGIN_MARK, render_markdown())


def main(argv: list[str]) -> int:
    return docsync.main(argv, "worker.http.openapi", sync_doc)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""JSON Schemas of the admin API's bodies (components of `worker.http.openapi`'s document)."""

from __future__ import annotations

from typing import Any, Final

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], required: list[str] | None = None, extra: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": props, "additionalProperties": extra}
    if required is not None:
        out["required"] = required
    return out


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_NSTR = {"type": ["string", "null"]}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _obj({"error": _STR}, ["error"]),
    "Health": _obj({"status": _STR}, ["status"], extra=True),
    "Readiness": _obj(
        {"ready": _BOOL, "reason": _STR, "active_calls": _INT}, ["ready", "reason"], extra=True
    ),
    "Settings": _obj(
        {
            "org_id": _STR,
            "phi_protection": _BOOL,
            "e2ee_required": _BOOL,
            "recording_enabled": _BOOL,
            "retention_days": {"type": ["integer", "null"], "minimum": 1},
            "updated_at": _NSTR,
        },
        ["org_id", "phi_protection", "e2ee_required", "recording_enabled", "retention_days"],
    ),
    "SettingsUpdate": {
        **_obj(
            {
                "phi_protection": _BOOL,
                "e2ee_required": _BOOL,
                "recording_enabled": _BOOL,
                "retention_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 36500},
            }
        ),
        "minProperties": 1,
    },
    "Call": _obj(
        {
            "call_id": _STR,
            "org_id": _STR,
            "source": _STR,
            "fixture": _NSTR,
            "started_at": _STR,
            "ended_at": _NSTR,
            "status": {"enum": ["active", "ended", "failed"]},
            "end_reason": _NSTR,
            "escalated": _BOOL,
        },
        ["call_id", "status", "started_at"],
        extra=True,
    ),
    "CallList": _obj({"calls": {"type": "array", "items": ref("Call")}}, ["calls"]),
    "Track": _obj(
        {
            "track": _INT,
            "frames_received": _INT,
            "frames_sealed": _INT,
            "frames_lost": _INT,
            "duration_s": _NUM,
            "recording_deleted": _BOOL,
        }
    ),
    "CallDetail": {
        "allOf": [
            ref("Call"),
            _obj(
                {
                    "tracks": {"type": "array", "items": ref("Track")},
                    "utterances": _INT,
                    "redactions": _COUNTS,
                },
                ["tracks", "utterances", "redactions"],
                extra=True,
            ),
        ]
    },
    "Utterance": _obj(
        {"track": _INT, "start": _NUM, "end": _NUM, "text": _STR, "committed_at": _STR},
        ["track", "start", "end", "text", "committed_at"],
    ),
    "Transcript": _obj(
        {"call_id": _STR, "status": _STR, "utterances": {"type": "array", "items": ref("Utterance")}},
        ["call_id", "utterances"],
    ),
    "Escalation": _obj(
        {
            "call_id": _STR,
            "state": {"enum": ["open", "claimed"]},
            "claimed_by": _NSTR,
            "claimed_by_me": _BOOL,
            "active": _BOOL,
        },
        ["call_id", "state"],
    ),
    "EscalationList": _obj({"escalations": {"type": "array", "items": ref("Escalation")}}, ["escalations"]),
    "Analytics": _obj(
        {
            "calls": _INT,
            "calls_by_status": _COUNTS,
            "calls_with_duration": _INT,
            "total_duration_s": _NUM,
            "average_duration_s": {"type": ["number", "null"]},
            "utterances": _INT,
            "redactions_by_type": _COUNTS,
        },
        [
            "calls",
            "calls_by_status",
            "total_duration_s",
            "average_duration_s",
            "utterances",
            "redactions_by_type",
        ],
    ),
    "AuditPage": _obj(
        {"entries": {"type": "array", "items": {"type": "object"}}, "next_since": _INT}, ["entries"]
    ),
    "AuditVerify": _obj(
        {
            "ok": _BOOL,
            "findings": {
                "type": "array",
                "items": _obj(
                    {
                        "kind": _STR,
                        "message": _STR,
                        "seq": {"type": ["integer", "null"]},
                        "checkpoint": {"type": ["integer", "null"]},
                    },
                    ["kind", "message"],
                ),
            },
        },
        ["ok", "findings"],
    ),
    "Checkpoint": {"type": "object"},
    "InclusionProof": _obj(
        {
            "seq": _INT,
            "leaf_index": _INT,
            "tree_size": _INT,
            "leaf_hash": _STR,
            "path": {"type": "array", "items": _STR},
            "root_hash": _STR,
            "checkpoint": {"type": ["integer", "null"]},
            "verified": _BOOL,
        },
        ["seq", "tree_size", "leaf_hash", "path", "root_hash"],
    ),
    "KeyRotation": _obj(
        {"kek_id": _STR, "version": _INT, "rewrapped": _INT, "unchanged": _INT, "skipped": _INT}
    ),
    "RetentionRun": _obj(
        {
            "deleted_calls": _INT,
            "keys_destroyed": _INT,
            "text_keys_destroyed": _INT,
            "failed": _INT,
            "cutoffs": {"type": "object", "additionalProperties": _STR},
        }
    ),
    "SFrameKeys": _obj(
        {
            "suite": {"type": "integer", "minimum": 1, "maximum": 5, "default": 4},
            "keys": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 16,
                "propertyNames": {"pattern": "^[0-9]{1,20}$"},
                "additionalProperties": {"type": "string", "pattern": "^[A-Za-z0-9_-]+={0,2}$"},
            },
        },
        ["keys"],
    ),
    "SFrameKeysAccepted": _obj({"call_id": _STR, "suite": _INT, "kids": {"type": "array", "items": _INT}}),
}

"""The SQL both dialects run, and the row -> record mapping.

Statements are constants with `?` placeholders (the PostgreSQL dialect numbers them `$1, $2, ...`; no `?`
appears anywhere else in them), so nothing but placeholders ever carries a value into a query. Only
standard SQL both databases speak: `ON CONFLICT`, `RETURNING`, row-value comparison, `CAST(? AS TEXT)`
where PostgreSQL must know the type of a parameter that may be NULL.
"""

from __future__ import annotations

import json
from typing import Any

from storage.protocols import CallInfo, OrgSettings, TrackInfo, UtteranceRecord, WrappedKey

Row = Any  # a sqlite3 row tuple or an asyncpg Record: indexed by column position

_CALLS = (
    "SELECT call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, escalated, "
    "external_id, pod_id FROM calls"
)
CALL_INSERT = (
    "INSERT INTO calls (call_id, org_id, source, started_at, ended_at, status, end_reason, fixture, "
    "escalated, external_id, pod_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
CALL_GET = _CALLS + " WHERE call_id = ?"
CALL_EXISTS = "SELECT 1 FROM calls WHERE call_id = ?"
CALL_LIST = _CALLS + " ORDER BY started_at, call_id"
CALL_LIST_ORG = _CALLS + " WHERE org_id = ? ORDER BY started_at, call_id"
CALL_EXPIRED = _CALLS + (
    " WHERE org_id = ? AND ((ended_at IS NOT NULL AND ended_at < ?) OR (ended_at IS NULL AND started_at < ?))"
    " ORDER BY COALESCE(ended_at, started_at), call_id LIMIT ?"
)
CALL_END = "UPDATE calls SET ended_at = ?, status = ?, end_reason = ? WHERE call_id = ?"
# Calls still active of one pod (a restart) and/or started before a time (their pod is gone). Arguments:
# ended, reason, pod, pod, before, before.
CALL_FAIL_STALE = (
    "UPDATE calls SET ended_at = ?, status = 'failed', end_reason = ? WHERE ended_at IS NULL AND "
    "(CAST(? AS TEXT) IS NULL OR pod_id = ?) AND (CAST(? AS TEXT) IS NULL OR started_at < ?) "
    "RETURNING call_id"
)
CALL_DELETE = "DELETE FROM calls WHERE call_id = ?"

_TRACKS = (
    "SELECT call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, frames_sealed, "
    "frames_lost, duration_s FROM tracks"
)
TRACK_INSERT = (
    "INSERT INTO tracks (call_id, track, suite, kid, kek_id, kek_version, wrapped_key, frames_received, "
    "frames_sealed, frames_lost, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
TRACK_GET = _TRACKS + " WHERE call_id = ? AND track = ?"
TRACK_LIST = _TRACKS + " WHERE call_id = ? ORDER BY track"
TRACK_COUNTS = (
    "UPDATE tracks SET frames_received = ?, frames_sealed = ?, frames_lost = ?, duration_s = ? "
    "WHERE call_id = ? AND track = ?"
)
TRACK_KEYS_PAGE = (
    "SELECT call_id, track, kek_id, kek_version, wrapped_key FROM tracks WHERE wrapped_key IS NOT NULL "
    "AND (call_id, track) > (?, ?) ORDER BY call_id, track LIMIT ?"
)
# A destroyed key (NULL) is never revived; the swap also needs the stored key to equal the expected one.
TRACK_KEY_REPLACE = (
    "UPDATE tracks SET kek_id = ?, kek_version = ?, wrapped_key = ? "
    "WHERE call_id = ? AND track = ? AND wrapped_key IS NOT NULL"
)
TRACK_KEY_SWAP = TRACK_KEY_REPLACE + " AND kek_id = ? AND kek_version = ? AND wrapped_key = ?"
TRACK_KEY_DESTROY = (
    "UPDATE tracks SET wrapped_key = NULL, key_destroyed_at = ? "
    "WHERE call_id = ? AND track = ? AND wrapped_key IS NOT NULL"
)

CALL_KEY_PUT = (
    "UPDATE calls SET text_kek_id = ?, text_kek_version = ?, text_key = ? "
    "WHERE call_id = ? AND text_key IS NULL AND text_key_destroyed_at IS NULL"
)
CALL_KEY_GET = "SELECT text_kek_id, text_kek_version, text_key FROM calls WHERE call_id = ?"
CALL_KEYS_PAGE = (
    "SELECT call_id, text_kek_id, text_kek_version, text_key FROM calls "
    "WHERE text_key IS NOT NULL AND call_id > ? ORDER BY call_id LIMIT ?"
)
CALL_KEY_SWAP = (
    "UPDATE calls SET text_kek_id = ?, text_kek_version = ?, text_key = ? WHERE call_id = ? "
    "AND text_key IS NOT NULL AND text_kek_id = ? AND text_kek_version = ? AND text_key = ?"
)
CALL_KEY_DESTROY = (
    "UPDATE calls SET text_key = NULL, text_key_destroyed_at = ? WHERE call_id = ? AND text_key IS NOT NULL"
)

UTT_INSERT = (
    "INSERT INTO utterances (call_id, track, seq, start_s, end_s, text, committed_at, redactions) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
UTT_GET = (
    "SELECT call_id, track, seq, start_s, end_s, text, committed_at, redactions FROM utterances "
    "WHERE call_id = ? AND track = ? AND seq = ?"
)
# One statement, so the existence of the call and its utterances come from one snapshot: no rows at all
# means no call, one row of NULLs a call without utterances.
UTT_LIST = (
    "SELECT u.call_id, u.track, u.seq, u.start_s, u.end_s, u.text, u.committed_at, u.redactions "
    "FROM calls c LEFT JOIN utterances u ON u.call_id = c.call_id WHERE c.call_id = ? "
    "ORDER BY u.start_s, u.track, u.seq"
)
# Only the text of one row, and only while it still is what the caller read (compare-and-set).
UTT_TEXT_SWAP = "UPDATE utterances SET text = ? WHERE call_id = ? AND track = ? AND seq = ? AND text = ?"

_SETTINGS = (
    "SELECT org_id, phi_protection, e2ee_required, recording_enabled, retention_days, updated_at "
    "FROM org_settings"
)
SETTINGS_GET = _SETTINGS + " WHERE org_id = ?"
SETTINGS_LIST = _SETTINGS + " ORDER BY org_id"
SETTINGS_PUT = (
    "INSERT INTO org_settings (org_id, phi_protection, e2ee_required, recording_enabled, retention_days, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET "
    "phi_protection = excluded.phi_protection, e2ee_required = excluded.e2ee_required, "
    "recording_enabled = excluded.recording_enabled, retention_days = excluded.retention_days, "
    "updated_at = excluded.updated_at"
)


def redactions_json(counts: dict[str, int]) -> str:
    """The stored form of redaction counts: compact JSON, sorted keys (a JSON text column, or JSONB)."""
    return json.dumps(counts, sort_keys=True, separators=(",", ":"))


def call_of(r: Row) -> CallInfo:
    return CallInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], r[10])


def call_args(c: CallInfo) -> tuple[object, ...]:
    times = (c.started_at, c.ended_at, c.status, c.end_reason)
    return (c.call_id, c.org_id, c.source, *times, c.fixture, c.escalated, c.external_id, c.pod_id)


def track_of(r: Row) -> TrackInfo:
    blob = b"" if r[6] is None else bytes(r[6])  # NULL: destroyed
    wrapped = WrappedKey(kek_id=r[4], kek_version=r[5], blob=blob)
    return TrackInfo(r[0], r[1], r[2], int(r[3]), wrapped, r[7], r[8], r[9], float(r[10]), r[6] is None)


def wrapped_of(kek_id: str, version: int, blob: bytes | None) -> WrappedKey:
    return WrappedKey(kek_id, version, b"" if blob is None else bytes(blob))


def utterance_of(r: Row) -> UtteranceRecord:
    return UtteranceRecord(r[0], r[1], r[2], float(r[3]), float(r[4]), r[5], r[6], json.loads(r[7]))


def utterance_args(u: UtteranceRecord) -> tuple[object, ...]:
    redactions = redactions_json(dict(u.redactions))
    return (u.call_id, u.track, u.seq, u.start, u.end, u.text, u.committed_at, redactions)


def settings_of(r: Row) -> OrgSettings:
    return OrgSettings(r[0], bool(r[1]), bool(r[2]), bool(r[3]), r[4], r[5])


def settings_args(s: OrgSettings) -> tuple[object, ...]:
    flags = (s.phi_protection, s.e2ee_required, s.recording_enabled)
    return (s.org_id, *flags, s.retention_days, s.updated_at)

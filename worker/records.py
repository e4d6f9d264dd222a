"""JSON shapes of stored records, one each, shared by the CLI (`transcripts --json`) and the admin API."""

from __future__ import annotations

from typing import Any

from storage.protocols import CallInfo, UtteranceRecord


def call_json(c: CallInfo) -> dict[str, Any]:
    """A call's metadata (never text); each caller adds its own fields after these."""
    return {
        "call_id": c.call_id,
        "org_id": c.org_id,
        "source": c.source,
        "fixture": c.fixture,
        "started_at": c.started_at,
        "ended_at": c.ended_at,
        "status": c.status,
    }


def utterance_json(u: UtteranceRecord) -> dict[str, Any]:
    """One stored (redacted) utterance."""
    return {"track": u.track, "start": u.start, "end": u.end, "text": u.text, "committed_at": u.committed_at}

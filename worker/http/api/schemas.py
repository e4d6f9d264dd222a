"""The admin API's response bodies as types (request bodies live beside their handlers, with their checks).

`worker.http.openapi` turns every type a `Route` names into `components/schemas`; a test validates real
answers against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, RootModel

from worker.http.api.model import Body, OpenBody

Counts = dict[str, NonNegativeInt]


class Error(Body):
    error: str


class Health(OpenBody):
    status: str


class Readiness(OpenBody):
    ready: bool
    reason: str
    active_calls: int | None = None


class Settings(Body):
    org_id: str
    phi_protection: bool
    e2ee_required: bool
    recording_enabled: bool
    retention_days: Annotated[int | None, Field(ge=1)]
    updated_at: str | None = None


class Call(OpenBody):
    call_id: str
    org_id: str
    source: str
    fixture: str | None
    started_at: str
    ended_at: str | None
    status: Literal["active", "ended", "failed"]
    end_reason: str | None
    escalated: bool


class CallList(Body):
    calls: list[Call]


class Track(Body):
    track: int
    frames_received: int
    frames_sealed: int
    frames_lost: int
    duration_s: float
    recording_deleted: bool


class CallDetail(Call):
    tracks: list[Track]
    utterances: int
    redactions: Counts


class Utterance(Body):
    track: int
    start: float
    end: float
    text: str
    committed_at: str


class Transcript(Body):
    call_id: str
    status: str
    utterances: list[Utterance]


class Escalation(Body):
    call_id: str
    state: Literal["open", "claimed"]
    claimed_by: str | None
    claimed_by_me: bool
    active: bool


class EscalationList(Body):
    escalations: list[Escalation]


class Analytics(Body):
    calls: int
    calls_by_status: Counts
    calls_with_duration: int
    total_duration_s: float
    average_duration_s: float | None
    utterances: int
    redactions_by_type: Counts


class AuditPage(Body):
    entries: list[dict[str, Any]]
    next_since: int


class Finding(Body):
    kind: str
    message: str
    seq: int | None
    checkpoint: int | None


class AuditVerify(Body):
    ok: bool
    findings: list[Finding]


class Checkpoint(RootModel[dict[str, Any]]):
    """A signed checkpoint as the audit log writes it."""


class InclusionProof(Body):
    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    path: list[str]
    root_hash: str
    checkpoint: int | None
    verified: bool


class KeyRotation(Body):
    kek_id: str
    version: int
    rewrapped: int
    unchanged: int
    skipped: int


class RetentionRun(Body):
    deleted_calls: int
    keys_destroyed: int
    text_keys_destroyed: int
    failed: int
    cutoffs: dict[str, str]


class SFrameKeysAccepted(Body):
    call_id: str
    suite: int
    kids: list[int]

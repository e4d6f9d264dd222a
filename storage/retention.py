"""Retention: delete calls past their organisation's retention period, crypto-shredding first.

For each org with `retention_days`, every call that ended before `now - retention_days` (or that never
ended and started ABANDONED_AFTER before that: its worker died mid-call) is removed in this order, so that
a crash at any point leaves nothing readable: (1) destroy the call's transcript-text key (when the store
keeps one, `storage.sealed_text`) and each track's wrapped key (the sealed text and recordings are now
unrecoverable even if a copy survives), (2) delete the recording objects, (3) delete the rows (call,
tracks, utterances). Every step is conditional or idempotent, so a rerun finishes what a crashed
run began, and two runs at once (several pods) each delete a disjoint share; a step is reported and audited
only by the run that did it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storage.errors import StorageError
from storage.protocols import CallInfo, CallKeyStore, RecordingStore, TranscriptStore, format_timestamp

AuditFn = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (action, resource, details)
BATCH = 200
# A call with no end that started this long before the cutoff was abandoned: its worker died mid-call
# (SIGKILL, node loss) and nothing will end it. It is deleted like an ended one. serve caps max-call-seconds
# at MAX_CALL; twice that leaves a margin (drain, clock skew between pods), so no live call is ever deleted.
MAX_CALL = timedelta(days=1)
ABANDONED_AFTER = 2 * MAX_CALL


@dataclass(slots=True)
class RetentionReport:
    deleted_calls: list[str] = field(default_factory=list)  # call rows this run deleted
    keys_destroyed: int = 0  # track keys this run destroyed
    text_keys_destroyed: int = 0  # call transcript-text keys this run destroyed
    cutoffs: dict[str, str] = field(default_factory=dict)  # org_id -> cutoff (UTC ISO 8601)
    failed: dict[str, str] = field(default_factory=dict)  # call_id -> one-line error (retried next run)


async def run_retention(
    store: TranscriptStore,
    recordings: RecordingStore,
    now: datetime,
    *,
    audit: AuditFn | None = None,
    batch: int = BATCH,
) -> RetentionReport:
    """Delete everything past retention as of `now` (timezone-aware). Returns what this run deleted."""
    if now.tzinfo is None:
        raise ValueError("run_retention needs a timezone-aware `now`")
    report = RetentionReport()
    for settings in await store.list_settings():
        if settings.retention_days is None:
            continue
        cutoff = now - timedelta(days=settings.retention_days)
        report.cutoffs[settings.org_id] = format_timestamp(cutoff)
        seen: set[str] = set()
        while True:
            due = await store.list_calls_ended_before(
                settings.org_id, cutoff, limit=batch, unended_started_before=cutoff - ABANDONED_AFTER
            )
            fresh = [c for c in due if c.call_id not in seen]
            if not fresh:  # nothing left, or only calls another run is still deleting
                break
            for call in fresh:
                seen.add(call.call_id)
                try:
                    await _delete_call(store, recordings, call, report, audit, settings.retention_days)
                except StorageError as exc:  # messages carry ids only; the next run retries this call
                    report.failed[call.call_id] = f"{type(exc).__name__}: {exc}"
    return report


async def _delete_call(
    store: TranscriptStore,
    recordings: RecordingStore,
    call: CallInfo,
    report: RetentionReport,
    audit: AuditFn | None,
    retention_days: int,
) -> None:
    resource = f"call:{call.call_id}"
    if isinstance(store, CallKeyStore) and await store.destroy_call_key(call.call_id):  # 1. crypto-shred
        report.text_keys_destroyed += 1
        if audit is not None:
            await audit("retention.text_key_destroyed", resource, {"org_id": call.org_id})
    tracks = await store.list_tracks(call.call_id)
    for track in tracks:
        if await store.destroy_track_key(call.call_id, track.track):
            report.keys_destroyed += 1
            if audit is not None:
                await audit(
                    "retention.key_destroyed", f"{resource}/track:{track.track}", {"org_id": call.org_id}
                )
    await recordings.delete_call(call.call_id)  # 2. objects (idempotent)
    if await store.delete_call(call.call_id):  # 3. rows (conditional: one run wins)
        report.deleted_calls.append(call.call_id)
        if audit is not None:
            details: dict[str, Any] = {
                "org_id": call.org_id,
                "ended_at": call.ended_at,
                "tracks": len(tracks),
                "retention_days": retention_days,
            }
            if call.ended_at is None:
                details["abandoned"] = True  # never ended: its worker died mid-call
            await audit("retention.call_deleted", resource, details)

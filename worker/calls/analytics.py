"""Aggregated analytics for an organisation (what the Viewer role sees): counts, durations, redactions by
type, calls by status. Never an id, a name or any text.

`aggregate` is the pure core (records in, numbers out); `org_analytics` reads them from a TranscriptStore.
Durations: wall-clock `ended_at - started_at` of calls that have ended (active calls count in `calls` and
`calls_by_status` but not in durations).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redact.variables import safe_placeholder
from storage.errors import NotFoundError
from storage.protocols import CallInfo, TranscriptStore, UtteranceRecord, parse_timestamp


def placeholder_name(name: str) -> str:
    """The redaction type of a stored or counted placeholder name (`[PHONE]` and `PHONE` are the same),
    from a fixed set: anything else counts as VARIABLE (it may be a caller-chosen name, itself PHI)."""
    return safe_placeholder(name)


@dataclass(frozen=True, slots=True)
class Analytics:
    calls: int
    calls_by_status: dict[str, int]
    calls_with_duration: int
    total_duration_s: float
    average_duration_s: float | None
    utterances: int
    redactions_by_type: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_by_status": self.calls_by_status,
            "calls_with_duration": self.calls_with_duration,
            "total_duration_s": self.total_duration_s,
            "average_duration_s": self.average_duration_s,
            "utterances": self.utterances,
            "redactions_by_type": self.redactions_by_type,
        }


def call_duration_s(call: CallInfo) -> float | None:
    if call.ended_at is None:
        return None
    try:
        seconds = (parse_timestamp(call.ended_at) - parse_timestamp(call.started_at)).total_seconds()
    except ValueError:
        return None
    return max(0.0, seconds)


def _tally(utterances: Iterable[UtteranceRecord], redactions: Counter[str]) -> int:
    n = 0
    for u in utterances:
        n += 1
        for name, count in u.redactions.items():
            redactions[placeholder_name(name)] += count
    return n


def _build(calls: Sequence[CallInfo], n_utts: int, redactions: Counter[str]) -> Analytics:
    by_status: Counter[str] = Counter(c.status for c in calls)
    durations = [d for d in (call_duration_s(c) for c in calls) if d is not None]
    total = round(sum(durations), 3)
    return Analytics(
        calls=len(calls),
        calls_by_status=dict(sorted(by_status.items())),
        calls_with_duration=len(durations),
        total_duration_s=total,
        average_duration_s=round(total / len(durations), 3) if durations else None,
        utterances=n_utts,
        redactions_by_type=dict(sorted(redactions.items())),
    )


def aggregate(calls: Sequence[CallInfo], utterances: Iterable[UtteranceRecord]) -> Analytics:
    redactions: Counter[str] = Counter()
    return _build(calls, _tally(utterances, redactions), redactions)


async def org_analytics(store: TranscriptStore, org_id: str) -> Analytics:
    """Aggregates over every stored call of `org_id`, one call's utterances in memory at a time (a call
    deleted meanwhile is skipped)."""
    kept: list[CallInfo] = []
    redactions: Counter[str] = Counter()
    n_utts = 0
    for call in await store.list_calls(org_id):
        if call.org_id != org_id:
            continue
        try:
            utts = await store.get_utterances(call.call_id)
        except NotFoundError:
            continue
        n_utts += _tally(utts, redactions)
        kept.append(call)
    return _build(kept, n_utts, redactions)

"""The TranscriptStore methods, written once for every backend (SQL and the in-memory fake).

Each public method checks and normalises its arguments (the `check_*` / `validate_*` functions of
`storage.protocols`), so every backend accepts and refuses the same inputs, and decides what "not found"
and "conflict" mean; the backend supplies small primitives (`_insert_call`, `_get_call`, ...) that take
checked values and only store and fetch. Messages carry ids and counts, never text or key material.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from redact.variables import safe_counts
from storage.errors import ConflictError, NotFoundError
from storage.protocols import (
    CallInfo,
    OrgSettings,
    TrackInfo,
    TrackKey,
    UtteranceRecord,
    WrappedKey,
    check_call,
    check_count,
    check_counts,
    check_end,
    check_settings,
    check_track,
    check_utterance,
    format_timestamp,
    validate_call_id,
    validate_org_id,
    validate_track,
)

K = TypeVar("K")
T = TypeVar("T")
KEY_PAGE = 500  # keys listed per round trip by the key iterators


def call_not_found(call_id: str) -> NotFoundError:
    return NotFoundError(f"call {call_id} not found")


def conflict(what: str) -> ConflictError:
    return ConflictError(f"{what} already exists with different contents")


async def paged(
    fetch: Callable[[K, int], Awaitable[list[T]]], start: K, last: Callable[[T], K]
) -> AsyncIterator[T]:
    """Yield what `fetch(after, KEY_PAGE)` returns, page after page, `after` the key of the last one."""
    after = start
    while True:
        page = await fetch(after, KEY_PAGE)
        for item in page:
            yield item
        if len(page) < KEY_PAGE:
            return
        after = last(page[-1])


def _track_ids(call_id: str, track: int) -> None:
    validate_call_id(call_id)
    validate_track(track)


class CheckedTranscriptStore(abc.ABC):
    """TranscriptStore over a backend's primitives (see the module docstring)."""

    # calls --------------------------------------------------------------------------------------------
    async def create_call(self, call: CallInfo) -> None:
        c = check_call(call)
        if not await self._insert_call(c):  # an identical retry is fine, a different call conflicts
            old = await self._get_call(c.call_id)
            if old is None or (old.org_id, old.source, old.started_at) != (c.org_id, c.source, c.started_at):
                raise conflict(f"call {c.call_id}")

    async def end_call(self, call_id: str, ended_at: str, status: str, reason: str | None) -> None:
        validate_call_id(call_id)
        ended = check_end(status, ended_at)
        if not await self._end_call(call_id, ended, status, reason):
            raise call_not_found(call_id)

    async def fail_active_calls(
        self, ended_at: str, reason: str, *, pod_id: str | None = None, started_before: datetime | None = None
    ) -> list[str]:
        ended = check_end("failed", ended_at)
        if pod_id is None and started_before is None:
            raise ValueError("fail_active_calls needs a pod_id or a started_before")
        before = None if started_before is None else format_timestamp(started_before)
        return sorted(await self._fail_active_calls(ended, reason, pod_id, before))

    async def get_call(self, call_id: str) -> CallInfo:
        validate_call_id(call_id)
        call = await self._get_call(call_id)
        if call is None:
            raise call_not_found(call_id)
        return call

    async def list_calls(self, org_id: str | None = None) -> list[CallInfo]:
        return await self._list_calls(org_id)

    async def list_calls_ended_before(
        self,
        org_id: str,
        cutoff: datetime,
        *,
        limit: int = 500,
        unended_started_before: datetime | None = None,
    ) -> list[CallInfo]:
        validate_org_id(org_id)
        started = "" if unended_started_before is None else format_timestamp(unended_started_before)
        return await self._calls_ended_before(org_id, format_timestamp(cutoff), started, limit)

    async def delete_call(self, call_id: str) -> bool:
        validate_call_id(call_id)
        return await self._delete_call(call_id)

    # tracks and their keys ----------------------------------------------------------------------------
    async def put_track(self, track: TrackInfo) -> None:
        t = check_track(track)
        if not await self._insert_track(t):  # never replaces a key: only an identical retry passes
            old = await self._get_track(t.call_id, t.track)
            if old is None or (old.suite, old.kid, old.wrapped_key) != (t.suite, t.kid, t.wrapped_key):
                raise conflict(f"call {t.call_id} track {t.track}")

    async def update_track_counts(
        self, call_id: str, track: int, *, received: int, sealed: int, lost: int, duration_s: float
    ) -> None:
        _track_ids(call_id, track)
        duration = check_counts(received, sealed, lost, duration_s)
        if not await self._update_track_counts(call_id, track, (received, sealed, lost), duration):
            raise NotFoundError(f"call {call_id} track {track} not found")

    async def get_track(self, call_id: str, track: int) -> TrackInfo:
        _track_ids(call_id, track)
        found = await self._get_track(call_id, track)
        if found is None:
            raise NotFoundError(f"call {call_id} track {track} not found")
        return found

    async def list_tracks(self, call_id: str) -> list[TrackInfo]:
        validate_call_id(call_id)
        return await self._list_tracks(call_id)

    def iter_wrapped_keys(self) -> AsyncIterator[TrackKey]:
        return paged(self._wrapped_keys_after, ("", -1), lambda k: (k.call_id, k.track))

    async def replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, *, expected: WrappedKey | None = None
    ) -> bool:
        _track_ids(call_id, track)
        if not wrapped.blob:
            raise ValueError("replace_wrapped_key needs a wrapped key; use destroy_track_key to destroy one")
        return await self._replace_wrapped_key(call_id, track, wrapped, expected)

    async def destroy_track_key(self, call_id: str, track: int) -> bool:
        _track_ids(call_id, track)
        return await self._destroy_track_key(call_id, track, format_timestamp(datetime.now(UTC)))

    # utterances ---------------------------------------------------------------------------------------
    async def append_utterance(self, utt: UtteranceRecord) -> None:
        # Redaction counts are kept in the clear: placeholder names from the fixed set only (a caller's
        # variable name may be PHI).
        u = check_utterance(utt)
        u = replace(u, redactions=safe_counts(u.redactions))
        if not await self._insert_utterance(u):
            if await self._get_utterance(u.call_id, u.track, u.seq) != u:
                raise conflict(f"utterance {u.call_id}/{u.track}/{u.seq}")

    async def get_utterances(self, call_id: str) -> list[UtteranceRecord]:
        validate_call_id(call_id)
        utts = await self._get_utterances(call_id)
        if utts is None:
            raise call_not_found(call_id)
        return utts

    async def replace_utterance_text(
        self, call_id: str, track: int, seq: int, *, expected: str, text: str
    ) -> bool:
        _track_ids(call_id, track)
        check_count("seq", seq)
        if not isinstance(expected, str) or not isinstance(text, str):
            raise ValueError("replace_utterance_text takes the expected and the new text as str")
        return await self._replace_utterance_text(call_id, track, seq, expected, text)

    # org settings -------------------------------------------------------------------------------------
    async def get_settings(self, org_id: str) -> OrgSettings:
        validate_org_id(org_id)
        found = await self._get_settings(org_id)
        return OrgSettings(org_id) if found is None else found

    async def put_settings(self, settings: OrgSettings) -> OrgSettings:
        s = check_settings(settings, datetime.now(UTC))
        await self._put_settings(s)
        return s

    async def list_settings(self) -> list[OrgSettings]:
        return await self._list_settings()

    @abc.abstractmethod
    async def close(self) -> None: ...

    # primitives: checked values in, records out; True/False for "done"/"no such row" -------------------
    @abc.abstractmethod
    async def _insert_call(self, c: CallInfo) -> bool:
        """Insert unless a call with this id exists; True if inserted."""

    @abc.abstractmethod
    async def _get_call(self, call_id: str) -> CallInfo | None: ...

    @abc.abstractmethod
    async def _end_call(self, call_id: str, ended: str, status: str, reason: str | None) -> bool: ...

    @abc.abstractmethod
    async def _fail_active_calls(
        self, ended: str, reason: str, pod_id: str | None, started_before: str | None
    ) -> list[str]:
        """Fail the calls not ended yet of `pod_id` (if given) started before `started_before` (if given)."""

    @abc.abstractmethod
    async def _list_calls(self, org_id: str | None) -> list[CallInfo]:
        """Ordered by (started_at, call_id)."""

    @abc.abstractmethod
    async def _calls_ended_before(self, org_id: str, before: str, started: str, limit: int) -> list[CallInfo]:
        """Ended before `before`, or never ended and started before `started`; oldest (end, else start)
        first, then by call_id."""

    @abc.abstractmethod
    async def _delete_call(self, call_id: str) -> bool:
        """Delete the call with its tracks and utterances; True if it existed."""

    @abc.abstractmethod
    async def _insert_track(self, t: TrackInfo) -> bool:
        """Insert unless the track exists (True if inserted); NotFoundError if its call does not."""

    @abc.abstractmethod
    async def _get_track(self, call_id: str, track: int) -> TrackInfo | None: ...

    @abc.abstractmethod
    async def _list_tracks(self, call_id: str) -> list[TrackInfo]: ...

    @abc.abstractmethod
    async def _update_track_counts(
        self, call_id: str, track: int, frames: tuple[int, int, int], duration_s: float
    ) -> bool:
        """Set (received, sealed, lost) and the duration; False if there is no such track."""

    @abc.abstractmethod
    async def _wrapped_keys_after(self, after: tuple[str, int], limit: int) -> list[TrackKey]:
        """Up to `limit` keys not destroyed, after `(call_id, track)`, in that order."""

    @abc.abstractmethod
    async def _replace_wrapped_key(
        self, call_id: str, track: int, wrapped: WrappedKey, expected: WrappedKey | None
    ) -> bool: ...

    @abc.abstractmethod
    async def _destroy_track_key(self, call_id: str, track: int, now: str) -> bool: ...

    @abc.abstractmethod
    async def _insert_utterance(self, u: UtteranceRecord) -> bool:
        """Insert unless one with this (call_id, track, seq) exists (True if inserted); NotFoundError if
        its call does not exist."""

    @abc.abstractmethod
    async def _get_utterance(self, call_id: str, track: int, seq: int) -> UtteranceRecord | None: ...

    @abc.abstractmethod
    async def _get_utterances(self, call_id: str) -> list[UtteranceRecord] | None:
        """In (start, track, seq) order; None if the call does not exist."""

    @abc.abstractmethod
    async def _replace_utterance_text(
        self, call_id: str, track: int, seq: int, expected: str, text: str
    ) -> bool: ...

    @abc.abstractmethod
    async def _get_settings(self, org_id: str) -> OrgSettings | None: ...

    @abc.abstractmethod
    async def _put_settings(self, s: OrgSettings) -> None: ...

    @abc.abstractmethod
    async def _list_settings(self) -> list[OrgSettings]:
        """Ordered by org_id."""

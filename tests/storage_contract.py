"""Behavioural suite every store backend must pass (embedded, in-memory, and later PostgreSQL + S3).

A backend plugs in by subclassing `StoreContract` in a `test_*.py` module and providing a `backend` fixture
that returns a `Backend`: an async `open()` giving a fresh `Stores` over the same persistent state each time
(so reopening tests durability). A backend that keeps nothing across `open()` (the in-memory fakes) sets
`test_flushed_data_survives_reopen = None` in its subclass.

    class TestPostgres(StoreContract):
        @pytest.fixture
        def backend(self, pg_url, s3_url) -> Backend:
            return Backend(lambda: open_stores(tmp, database_url=pg_url, object_store_url=s3_url))
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from storage.errors import (
    ConflictError,
    InvalidIdError,
    NotFoundError,
    StoreClosedError,
)
from storage.factory import Stores
from storage.protocols import CallInfo, OrgSettings, TrackInfo, UtteranceRecord, WrappedKey

T0 = "2026-11-27T16:32:56.123Z"
BAD_CALL_IDS = ["", "../x", "a/b", "..", ".", "x" * 65, "abc\n", "a b", "caf\u00e9", "a\x00b", "/etc", "a\\b"]


def new_id() -> str:
    return secrets.token_hex(16)


def make_call(call_id: str | None = None, *, org: str = "org-a", started: str = T0, **kw: Any) -> CallInfo:
    return CallInfo(
        call_id=new_id() if call_id is None else call_id,
        org_id=org,
        source="replay",
        started_at=started,
        **kw,
    )


def make_wrapped(version: int = 1) -> WrappedKey:
    return WrappedKey(kek_id="kek-test", kek_version=version, blob=os.urandom(44))


def make_track(call_id: str, track: int = 0, **kw: Any) -> TrackInfo:
    args: dict[str, Any] = {"suite": 4, "kid": track, "wrapped_key": make_wrapped()}
    args.update(kw)
    return TrackInfo(call_id=call_id, track=track, **args)


def make_utt(call_id: str, track: int = 0, seq: int = 0, start: float = 0.0, **kw: Any) -> UtteranceRecord:
    args: dict[str, Any] = {"end": start + 1.5, "text": f"hello [PHONE] {seq}", "committed_at": T0}
    args.update(kw)
    return UtteranceRecord(call_id=call_id, track=track, seq=seq, start=start, **args)


@dataclass(frozen=True, slots=True)
class Backend:
    open: Callable[[], Awaitable[Stores]]


class StoreContract:
    @pytest.fixture
    async def stores(self, backend: Backend) -> AsyncIterator[Stores]:
        s = await backend.open()
        yield s
        await s.close()

    # calls ------------------------------------------------------------------------------------------
    async def test_call_round_trip(self, stores: Stores) -> None:
        call = make_call(fixture="example_call.flac", escalated=True)
        await stores.transcripts.create_call(call)
        assert await stores.transcripts.get_call(call.call_id) == call

    async def test_external_id_round_trips_and_lists(self, stores: Stores) -> None:
        call = replace(make_call(), source="media-streams", external_id="CA0123456789abcdef0123456789abcdef")
        await stores.transcripts.create_call(call)
        assert (await stores.transcripts.get_call(call.call_id)).external_id == call.external_id
        (listed,) = [c for c in await stores.transcripts.list_calls(None) if c.call_id == call.call_id]
        assert (listed.source, listed.external_id) == ("media-streams", call.external_id)

    async def test_timestamps_are_normalised_to_utc_millis_z(self, stores: Stores) -> None:
        call = make_call(started="2026-11-27T17:32:56.1234+01:00")
        await stores.transcripts.create_call(call)
        assert (await stores.transcripts.get_call(call.call_id)).started_at == T0

    async def test_naive_or_garbage_timestamps_are_refused(self, stores: Stores) -> None:
        with pytest.raises(ValueError, match=r"no time zone"):
            await stores.transcripts.create_call(make_call(started="2026-11-27T16:32:56"))
        with pytest.raises(ValueError, match=r"expected ISO 8601"):
            await stores.transcripts.create_call(make_call(started="yesterday"))

    async def test_create_call_is_idempotent_but_refuses_a_different_call(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        await stores.transcripts.create_call(call)
        with pytest.raises(
            ConflictError, match=rf"^call {call.call_id} already exists with different contents$"
        ):
            await stores.transcripts.create_call(replace(call, org_id="org-b"))
        assert [c.call_id for c in await stores.transcripts.list_calls()] == [call.call_id]

    async def test_unknown_call(self, stores: Stores) -> None:
        with pytest.raises(NotFoundError, match=r"^call nope not found$"):
            await stores.transcripts.get_call("nope")
        with pytest.raises(NotFoundError, match=r"^call nope not found$"):
            await stores.transcripts.end_call("nope", T0, "ended", None)
        with pytest.raises(NotFoundError, match=r"^call nope not found$"):
            await stores.transcripts.get_utterances("nope")
        assert await stores.transcripts.list_tracks("nope") == []

    async def test_end_call(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        await stores.transcripts.end_call(call.call_id, "2026-11-27T16:40:00.000Z", "failed", "asr_error")
        got = await stores.transcripts.get_call(call.call_id)
        assert (got.ended_at, got.status, got.end_reason) == (
            "2026-11-27T16:40:00.000Z",
            "failed",
            "asr_error",
        )
        with pytest.raises(ValueError, match=r"end status must be"):
            await stores.transcripts.end_call(call.call_id, T0, "paused", None)

    async def test_fail_active_calls_of_a_pod_or_older_than_a_cutoff(self, stores: Stores) -> None:
        t = stores.transcripts
        mine, done, other = make_call(pod_id="pod-a"), make_call(pod_id="pod-a"), make_call(pod_id="pod-b")
        old = make_call(pod_id="pod-c", started="2026-01-01T00:00:00.000Z")
        for c in (mine, done, other, old):
            await t.create_call(c)
        assert (await t.get_call(mine.call_id)).pod_id == "pod-a"
        await t.end_call(done.call_id, "2026-11-27T16:40:00.000Z", "ended", None)
        ended = "2026-11-27T17:00:00.000Z"
        assert await t.fail_active_calls(ended, "worker restarted", pod_id="pod-a") == [mine.call_id]
        got = await t.get_call(mine.call_id)
        assert (got.ended_at, got.status, got.end_reason) == (ended, "failed", "worker restarted")
        assert (await t.get_call(done.call_id)).status == "ended"
        cutoff = datetime(2026, 6, 1, tzinfo=UTC)
        assert await t.fail_active_calls(ended, "worker lost", started_before=cutoff) == [old.call_id]
        assert (await t.get_call(other.call_id)).status == "active"
        with pytest.raises(ValueError, match="needs a pod_id or a started_before"):
            await t.fail_active_calls(ended, "worker lost")

    async def test_list_calls_ordered_and_filtered_by_org(self, stores: Stores) -> None:
        c2 = make_call("b2", started="2026-01-02T00:00:00.000Z")
        c1 = make_call("a1", started="2026-01-01T00:00:00.000Z", org="org-b")
        c3 = make_call("a3", started="2026-01-02T00:00:00.000Z")
        for c in (c2, c1, c3):
            await stores.transcripts.create_call(c)
        assert [c.call_id for c in await stores.transcripts.list_calls()] == ["a1", "a3", "b2"]
        assert [c.call_id for c in await stores.transcripts.list_calls("org-a")] == ["a3", "b2"]
        assert await stores.transcripts.list_calls("org-z") == []

    # ids --------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("bad", BAD_CALL_IDS)
    async def test_unsafe_call_ids_are_refused_everywhere(self, stores: Stores, bad: str) -> None:
        t, r = stores.transcripts, stores.recordings
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: t.create_call(make_call(bad)),
            lambda: t.get_call(bad),
            lambda: t.put_track(make_track(bad)),
            lambda: t.append_utterance(make_utt(bad)),
            lambda: t.delete_call(bad),
            lambda: t.destroy_track_key(bad, 0),
            lambda: r.open_track(bad, 0),
            lambda: r.read_track(bad, 0),
            lambda: r.delete_call(bad),
        ]
        for attempt in attempts:
            with pytest.raises(InvalidIdError, match=r"^invalid call id "):
                await attempt()
        assert await t.list_calls() == []

    @pytest.mark.parametrize("bad", [-1, 1024, True, "0"])
    async def test_bad_track_numbers_are_refused(self, stores: Stores, bad: object) -> None:
        with pytest.raises(InvalidIdError, match=r"^invalid track number"):
            await stores.recordings.open_track("c1", bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidIdError, match=r"^invalid track number"):
            await stores.transcripts.get_track("c1", bad)  # type: ignore[arg-type]

    # tracks and keys --------------------------------------------------------------------------------
    async def test_track_round_trip_with_64_bit_kid(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        track = make_track(call.call_id, 1, kid=2**64 - 1, frames_received=5, duration_s=0.1)
        await stores.transcripts.put_track(track)
        await stores.transcripts.put_track(track)  # an identical retry is fine
        assert await stores.transcripts.get_track(call.call_id, 1) == track
        await stores.transcripts.put_track(make_track(call.call_id, 0))
        assert [t.track for t in await stores.transcripts.list_tracks(call.call_id)] == [0, 1]

    async def test_put_track_never_replaces_a_key(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        track = make_track(call.call_id)
        await stores.transcripts.put_track(track)
        with pytest.raises(ConflictError, match=rf"^call {call.call_id} track 0 already exists"):
            await stores.transcripts.put_track(replace(track, wrapped_key=make_wrapped()))
        assert (await stores.transcripts.get_track(call.call_id, 0)).wrapped_key == track.wrapped_key

    async def test_put_track_needs_its_call(self, stores: Stores) -> None:
        with pytest.raises(NotFoundError, match=r"^call ghost not found$"):
            await stores.transcripts.put_track(make_track("ghost"))

    async def test_update_track_counts(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        await stores.transcripts.put_track(make_track(call.call_id))
        await stores.transcripts.update_track_counts(
            call.call_id, 0, received=100, sealed=98, lost=2, duration_s=2.0
        )
        got = await stores.transcripts.get_track(call.call_id, 0)
        assert (got.frames_received, got.frames_sealed, got.frames_lost, got.duration_s) == (100, 98, 2, 2.0)
        with pytest.raises(NotFoundError, match=rf"^call {call.call_id} track 3 not found$"):
            await stores.transcripts.update_track_counts(
                call.call_id, 3, received=1, sealed=1, lost=0, duration_s=0
            )
        with pytest.raises(ValueError, match=r"lost must be an int >= 0"):
            await stores.transcripts.update_track_counts(
                call.call_id, 0, received=1, sealed=1, lost=-1, duration_s=0
            )

    async def test_iter_replace_and_destroy_keys(self, stores: Stores) -> None:
        t = stores.transcripts
        calls = [make_call(f"c{i}") for i in range(3)]
        for c in calls:
            await t.create_call(c)
            for n in range(2):
                await t.put_track(make_track(c.call_id, n))
        listed = [k async for k in t.iter_wrapped_keys()]
        assert [(k.call_id, k.track) for k in listed] == [(f"c{i}", n) for i in range(3) for n in range(2)]
        first = listed[0]
        new = make_wrapped(2)
        assert not await t.replace_wrapped_key("c0", 0, new, expected=make_wrapped())  # stale expectation
        assert await t.replace_wrapped_key("c0", 0, new, expected=first.wrapped)
        assert (await t.get_track("c0", 0)).wrapped_key == new
        assert await t.destroy_track_key("c0", 0)
        assert not await t.destroy_track_key("c0", 0)  # already destroyed: no-op
        gone = await t.get_track("c0", 0)
        assert gone.key_destroyed and gone.wrapped_key.blob == b"" and gone.wrapped_key.kek_version == 2
        assert not await t.replace_wrapped_key("c0", 0, make_wrapped(3))  # never revives a destroyed key
        assert (await t.get_track("c0", 0)).key_destroyed
        assert ("c0", 0) not in [(k.call_id, k.track) async for k in t.iter_wrapped_keys()]
        assert not await t.destroy_track_key("c9", 0)
        with pytest.raises(ValueError, match=r"needs a wrapped key"):
            await t.replace_wrapped_key("c0", 1, WrappedKey("k", 1, b""))

    # utterances -------------------------------------------------------------------------------------
    async def test_utterances_round_trip_in_time_order(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        u_late = make_utt(call.call_id, 0, 1, start=5.0, redactions={"[PHONE]": 1, "[EMAIL]": 2})
        u_t1 = make_utt(call.call_id, 1, 0, start=1.0)
        u_t0 = make_utt(call.call_id, 0, 0, start=1.0, committed_at="2026-11-27T16:32:57.5+00:00")
        for u in (u_late, u_t1, u_t0):
            await stores.transcripts.append_utterance(u)
        got = await stores.transcripts.get_utterances(call.call_id)
        assert got == [replace(u_t0, committed_at="2026-11-27T16:32:57.500Z"), u_t1, u_late]
        assert dict(got[2].redactions) == {"[EMAIL]": 2, "[PHONE]": 1}

    async def test_append_utterance_is_idempotent_but_refuses_a_rewrite(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        utt = make_utt(call.call_id)
        await stores.transcripts.append_utterance(utt)
        await stores.transcripts.append_utterance(utt)
        with pytest.raises(ConflictError, match=rf"^utterance {call.call_id}/0/0 already exists"):
            await stores.transcripts.append_utterance(replace(utt, text="something else"))
        assert await stores.transcripts.get_utterances(call.call_id) == [utt]

    async def test_utterance_checks(self, stores: Stores) -> None:
        call = make_call()
        await stores.transcripts.create_call(call)
        assert await stores.transcripts.get_utterances(call.call_id) == []
        with pytest.raises(NotFoundError, match=r"^call ghost not found$"):
            await stores.transcripts.append_utterance(make_utt("ghost"))
        with pytest.raises(ValueError, match=r"end 1.0 < start 2.0"):
            await stores.transcripts.append_utterance(make_utt(call.call_id, start=2.0, end=1.0))
        with pytest.raises(ValueError, match=r"finite"):
            await stores.transcripts.append_utterance(make_utt(call.call_id, start=float("nan")))
        with pytest.raises(ValueError, match=r"redactions"):
            await stores.transcripts.append_utterance(make_utt(call.call_id, redactions={"[PHONE]": -1}))

    # settings ---------------------------------------------------------------------------------------
    async def test_settings(self, stores: Stores) -> None:
        t = stores.transcripts
        assert await t.get_settings("org-a") == OrgSettings("org-a")
        stored = await t.put_settings(OrgSettings("org-b", phi_protection=False, retention_days=30))
        assert stored.updated_at is not None and stored.updated_at.endswith("Z")
        assert await t.get_settings("org-b") == stored
        fixed = OrgSettings("org-a", e2ee_required=True, recording_enabled=False, updated_at=T0)
        assert await t.put_settings(fixed) == fixed
        assert await t.list_settings() == [fixed, stored]
        with pytest.raises(ValueError, match=r"retention_days must be None or an int >= 1"):
            await t.put_settings(OrgSettings("org-c", retention_days=0))

    # retention queries ------------------------------------------------------------------------------
    async def test_list_calls_ended_before(self, stores: Stores) -> None:
        t = stores.transcripts
        ends = {"old1": "2026-01-01T00:00:00.000Z", "old2": "2026-01-02T00:00:00.000Z"}
        ends |= {"edge": "2026-01-10T00:00:00.000Z", "new": "2026-02-01T00:00:00.000Z"}
        for call_id, ended in ends.items():
            await t.create_call(make_call(call_id, started="2025-12-31T00:00:00.000Z"))
            await t.end_call(call_id, ended, "ended", None)
        await t.create_call(make_call("live", started="2025-01-01T00:00:00.000Z"))  # never ended
        await t.create_call(make_call("other", org="org-b", started="2025-01-01T00:00:00.000Z"))
        await t.end_call("other", "2025-01-01T00:00:00.000Z", "ended", None)
        cutoff = datetime(2026, 1, 10, tzinfo=UTC)
        assert [c.call_id for c in await t.list_calls_ended_before("org-a", cutoff)] == ["old1", "old2"]
        assert [c.call_id for c in await t.list_calls_ended_before("org-a", cutoff, limit=1)] == ["old1"]
        # Never ended ("live" started 2025-01-01): listed only when it started before the given time,
        # ordered by its start among the others' ends.
        await t.create_call(make_call("recent", started="2026-01-09T12:00:00.000Z"))  # never ended
        unended = datetime(2026, 1, 9, tzinfo=UTC)
        got = await t.list_calls_ended_before("org-a", cutoff, unended_started_before=unended)
        assert [c.call_id for c in got] == ["live", "old1", "old2"]
        got = await t.list_calls_ended_before("org-a", cutoff, limit=1, unended_started_before=unended)
        assert [c.call_id for c in got] == ["live"]

    async def test_delete_call_removes_everything_once(self, stores: Stores) -> None:
        t = stores.transcripts
        call = make_call()
        await t.create_call(call)
        await t.put_track(make_track(call.call_id))
        await t.append_utterance(make_utt(call.call_id))
        assert await t.delete_call(call.call_id)
        assert not await t.delete_call(call.call_id)
        with pytest.raises(NotFoundError):
            await t.get_call(call.call_id)
        assert await t.list_tracks(call.call_id) == []
        assert [k async for k in t.iter_wrapped_keys()] == []
        await t.create_call(call)  # the id is free again and nothing of the old call comes back
        assert await t.get_utterances(call.call_id) == []

    # recordings -------------------------------------------------------------------------------------
    async def test_recording_round_trip_in_order(self, stores: Stores) -> None:
        sink = await stores.recordings.open_track("c1", 0)
        chunks = [os.urandom(n) for n in (1, 100, 70_000, 3, 150_000, 0, 999)]
        for chunk in chunks:
            await sink.append(chunk)
        await sink.flush()
        assert await stores.recordings.read_track("c1", 0) == b"".join(chunks)
        await sink.append(b"tail")
        await sink.close()
        assert await stores.recordings.read_track("c1", 0) == b"".join(chunks) + b"tail"

    async def test_recording_track_has_one_writer_and_can_be_continued(self, stores: Stores) -> None:
        sink = await stores.recordings.open_track("c1", 0)
        with pytest.raises(ConflictError, match=r"^call c1 track 0 is already open for writing$"):
            await stores.recordings.open_track("c1", 0)
        await sink.append(b"one")
        await sink.close()
        await sink.close()  # closing twice is fine
        with pytest.raises(StoreClosedError):
            await sink.append(b"late")
        again = await stores.recordings.open_track("c1", 0)
        await again.append(b"two")
        await again.close()
        assert await stores.recordings.read_track("c1", 0) == b"onetwo"

    async def test_recording_delete(self, stores: Stores) -> None:
        r = stores.recordings
        for n in (0, 1):
            sink = await r.open_track("c1", n)
            await sink.append(b"x")
            await sink.close()
        sink = await r.open_track("c2", 0)
        await sink.append(b"keep")
        with pytest.raises(ConflictError, match=r"^call c2 is being recorded"):
            await r.delete_call("c2")
        await sink.close()
        await r.delete_call("c1")
        await r.delete_call("c1")  # idempotent
        await r.delete_call("never")
        for n in (0, 1):
            with pytest.raises(NotFoundError, match=rf"^recording of call c1 track {n} not found$"):
                await r.read_track("c1", n)
        assert await r.read_track("c2", 0) == b"keep"

    # lifecycle and durability -----------------------------------------------------------------------
    async def test_closed_stores_refuse_work(self, backend: Backend) -> None:
        s = await backend.open()
        await s.close()
        with pytest.raises(StoreClosedError):
            await s.transcripts.list_calls()
        with pytest.raises(StoreClosedError):
            await s.recordings.open_track("c1", 0)

    async def test_flushed_data_survives_reopen(self, backend: Backend) -> None:
        s = await backend.open()
        call = make_call()
        await s.transcripts.create_call(call)
        await s.transcripts.put_track(make_track(call.call_id))
        await s.transcripts.append_utterance(make_utt(call.call_id))
        await s.transcripts.put_settings(OrgSettings("org-a", retention_days=7, updated_at=T0))
        sink = await s.recordings.open_track(call.call_id, 0)
        await sink.append(b"sealed-bytes")
        await sink.flush()
        await s.close()  # the sink is deliberately left open: flush alone must be enough
        s2 = await backend.open()
        try:
            assert await s2.transcripts.get_call(call.call_id) == call
            assert len(await s2.transcripts.get_utterances(call.call_id)) == 1
            assert (await s2.transcripts.get_settings("org-a")).retention_days == 7
            assert await s2.recordings.read_track(call.call_id, 0) == b"sealed-bytes"
        finally:
            await s2.close()

"""Retention: exactly what is due is deleted, keys are destroyed first, reruns and parallel runs are safe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.errors import StorageUnavailableError
from storage.factory import Stores, memory_stores, open_stores
from storage.memory import MemoryRecordingStore
from storage.protocols import OrgSettings, format_timestamp
from storage.retention import run_retention
from tests.storage_contract import make_call, make_track, make_utt

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def ago(days: float) -> str:
    return format_timestamp(NOW - timedelta(days=days))


@pytest.fixture(params=["local", "memory"])
async def stores(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Stores]:
    s = await open_stores(data_dir) if request.param == "local" else memory_stores()
    yield s
    await s.close()


async def add_call(
    stores: Stores,
    call_id: str,
    org: str,
    ended_days_ago: float | None,
    tracks: int = 2,
    started_days_ago: float = 400,
) -> None:
    await stores.transcripts.create_call(make_call(call_id, org=org, started=ago(started_days_ago)))
    for n in range(tracks):
        await stores.transcripts.put_track(make_track(call_id, n))
        sink = await stores.recordings.open_track(call_id, n)
        await sink.append(b"sealed")
        await sink.close()
    await stores.transcripts.append_utterance(make_utt(call_id))
    if ended_days_ago is not None:
        await stores.transcripts.end_call(call_id, ago(ended_days_ago), "ended", None)


async def populate(stores: Stores) -> set[str]:
    """Returns the ids due for deletion at NOW."""
    t = stores.transcripts
    await t.put_settings(OrgSettings("org-a", retention_days=30))
    await t.put_settings(OrgSettings("org-c", retention_days=7))
    await t.put_settings(OrgSettings("org-keep"))  # no retention period: kept
    await add_call(stores, "a_old", "org-a", 31)
    await add_call(stores, "a_older", "org-a", 300, tracks=1)
    await add_call(stores, "a_edge", "org-a", 30)  # ended exactly at the cutoff: not yet due
    await add_call(stores, "a_new", "org-a", 1)
    # Never ended, started 400 days ago: its worker died mid-call (SIGKILL); nothing will ever end it.
    await add_call(stores, "a_abandoned", "org-a", None)
    # Never ended, started 31.5 days ago: a call lasts at most a day, but retention keeps a day's margin
    # more (two days past the cutoff), so it waits.
    await add_call(stores, "a_live", "org-a", None, started_days_ago=31.5)
    await add_call(stores, "c_old", "org-c", 8)
    await add_call(stores, "c_new", "org-c", 6)
    await add_call(stores, "keep_old", "org-keep", 1000)
    await add_call(stores, "nosettings_old", "org-x", 1000)  # org without settings: kept
    return {"a_old", "a_older", "a_abandoned", "c_old"}


async def test_removes_exactly_what_is_due(stores: Stores) -> None:
    due = await populate(stores)
    audit: list[tuple[str, str, dict[str, Any]]] = []

    async def record(action: str, resource: str, details: dict[str, Any]) -> None:
        audit.append((action, resource, details))

    report = await run_retention(stores.transcripts, stores.recordings, NOW, audit=record)
    assert set(report.deleted_calls) == due and report.failed == {}
    assert report.keys_destroyed == 7
    assert report.cutoffs == {"org-a": ago(30), "org-c": ago(7)}
    left = {c.call_id for c in await stores.transcripts.list_calls()}
    assert left == {"a_edge", "a_new", "a_live", "c_new", "keep_old", "nosettings_old"}
    for call_id in due:  # nothing readable remains anywhere
        assert await stores.transcripts.list_tracks(call_id) == []
        for n in range(2):
            with pytest.raises(Exception, match="not found"):
                await stores.recordings.read_track(call_id, n)
    for call_id in left:
        assert await stores.recordings.read_track(call_id, 0) == b"sealed"
        assert not (await stores.transcripts.get_track(call_id, 0)).key_destroyed
    shredded = sorted(r for a, r, _ in audit if a == "retention.key_destroyed")
    expected = ["a_abandoned/track:0", "a_abandoned/track:1", "a_old/track:0", "a_old/track:1"]
    expected += ["a_older/track:0", "c_old/track:0", "c_old/track:1"]
    assert shredded == [f"call:{e}" for e in expected]
    deleted = {r: d for a, r, d in audit if a == "retention.call_deleted"}
    assert set(deleted) == {f"call:{c}" for c in due}
    assert deleted["call:a_old"] == {
        "org_id": "org-a",
        "ended_at": ago(31),
        "tracks": 2,
        "retention_days": 30,
    }
    assert deleted["call:a_abandoned"] == {
        "org_id": "org-a",
        "ended_at": None,
        "tracks": 2,
        "retention_days": 30,
        "abandoned": True,
    }


async def test_keys_are_destroyed_before_objects_and_rows(stores: Stores) -> None:
    due = await populate(stores)
    events: list[tuple[str, str, str]] = []  # (store, method, call_id)

    class Spy:
        def __init__(self, inner: object, label: str, watched: set[str]) -> None:
            self.inner, self.label, self.watched = inner, label, watched

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if name not in self.watched:
                return attr

            async def call(*args: Any, **kw: Any) -> Any:
                events.append((self.label, name, args[0]))
                return await attr(*args, **kw)

            return call

    spy_t = Spy(stores.transcripts, "rows", {"destroy_track_key", "delete_call"})
    spy_r = Spy(stores.recordings, "objects", {"delete_call"})
    await run_retention(spy_t, spy_r, NOW)  # Spy is Any-typed, like the stores it wraps
    assert {e[2] for e in events} == due
    for call_id in due:
        mine = [(label, method) for label, method, c in events if c == call_id]
        tracks = 1 if call_id == "a_older" else 2
        expected = [("rows", "destroy_track_key")] * tracks + [
            ("objects", "delete_call"),
            ("rows", "delete_call"),
        ]
        assert mine == expected


async def test_a_failure_after_shredding_leaves_nothing_readable_and_a_rerun_finishes(stores: Stores) -> None:
    due = await populate(stores)
    broken = MemoryRecordingStore()
    broken.fail_next(10**6, StorageUnavailableError("object store down"))
    report = await run_retention(stores.transcripts, broken, NOW)
    assert report.deleted_calls == [] and set(report.failed) == due
    assert report.failed["a_old"] == "StorageUnavailableError: object store down"
    for call_id in due:  # rows are still there, but every key is already gone
        assert all(t.key_destroyed for t in await stores.transcripts.list_tracks(call_id))
    report = await run_retention(stores.transcripts, stores.recordings, NOW)
    assert set(report.deleted_calls) == due and report.keys_destroyed == 0 and report.failed == {}


async def test_idempotent(stores: Stores) -> None:
    due = await populate(stores)
    first = await run_retention(stores.transcripts, stores.recordings, NOW)
    second = await run_retention(stores.transcripts, stores.recordings, NOW)
    assert set(first.deleted_calls) == due
    assert (second.deleted_calls, second.keys_destroyed, second.failed) == ([], 0, {})


async def test_two_concurrent_runs_delete_each_call_once(stores: Stores) -> None:
    due = await populate(stores)
    for i in range(20):
        await add_call(stores, f"bulk{i:02d}", "org-c", 10 + i, tracks=1)
    due |= {f"bulk{i:02d}" for i in range(20)}
    audits: list[str] = []

    async def record(action: str, resource: str, details: dict[str, Any]) -> None:
        audits.append(f"{action} {resource}")
        await asyncio.sleep(0)

    a, b = await asyncio.gather(
        run_retention(stores.transcripts, stores.recordings, NOW, audit=record, batch=4),
        run_retention(stores.transcripts, stores.recordings, NOW, audit=record, batch=4),
    )
    assert set(a.deleted_calls) | set(b.deleted_calls) == due
    assert not set(a.deleted_calls) & set(b.deleted_calls)
    assert a.keys_destroyed + b.keys_destroyed == 7 + 20
    assert len(audits) == len(set(audits)) == 27 + len(due)
    assert a.failed == b.failed == {}


async def test_two_pods_on_one_database(data_dir: Path) -> None:
    pod1, pod2 = await open_stores(data_dir), await open_stores(data_dir)
    try:
        due = await populate(pod1)
        a, b = await asyncio.gather(
            run_retention(pod1.transcripts, pod1.recordings, NOW, batch=1),
            run_retention(pod2.transcripts, pod2.recordings, NOW, batch=1),
        )
        assert sorted(a.deleted_calls + b.deleted_calls) == sorted(due)
        assert a.failed == b.failed == {}
    finally:
        await pod1.close()
        await pod2.close()


async def test_needs_an_aware_now(stores: Stores) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await run_retention(stores.transcripts, stores.recordings, datetime(2026, 1, 1))

"""Calls killed with their pod do not stay `active`: each call stores its pod id; a restarting pod marks its
own left-over calls failed, any pod marks calls older than any call can run failed (storage + real serve)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.factory import open_stores
from storage.keys import LocalKeyFile
from storage.protocols import CallInfo
from tests.serve_util import serve, start_call
from tests.support import FIXTURES, json_lines, run_cli
from tests.test_faults_serve import _call_info, _kill, _wait_log
from worker.calls.engine import utc_now


def _at(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_fail_active_calls_by_pod_and_by_age(tmp_path: Path) -> None:
    """On SQLite: only `active` calls of the pod are marked (reason, end time); ended calls and other
    pods' calls are untouched; the age filter marks any pod's call started before the cutoff."""
    stores = await open_stores(tmp_path / "data", keys=LocalKeyFile(tmp_path / "kek.json"))
    t = stores.transcripts
    now = datetime.now(UTC)
    try:
        await t.create_call(CallInfo("a1", "default", "whip", _at(now), pod_id="pod-a"))
        await t.create_call(CallInfo("a2", "default", "whip", _at(now), pod_id="pod-a"))
        await t.create_call(CallInfo("b1", "default", "whip", _at(now - timedelta(hours=3)), pod_id="pod-b"))
        await t.create_call(CallInfo("b2", "default", "whip", _at(now), pod_id="pod-b"))
        await t.end_call("a2", utc_now(), "ended", "client hung up")
        assert (await t.get_call("a1")).pod_id == "pod-a"
        assert await t.fail_active_calls(utc_now(), "worker restarted", pod_id="pod-a") == ["a1"]
        a1 = await t.get_call("a1")
        assert (a1.status, a1.end_reason) == ("failed", "worker restarted") and a1.ended_at
        assert (await t.get_call("a2")).status == "ended"
        cutoff = now - timedelta(hours=2)
        assert await t.fail_active_calls(utc_now(), "worker lost", started_before=cutoff) == ["b1"]
        assert (await t.get_call("b2")).status == "active"
        with pytest.raises(ValueError, match="needs a pod_id or a started_before"):
            await t.fail_active_calls(utc_now(), "x")
    finally:
        await stores.close()


@pytest.mark.slow
def test_serve_killed_mid_call_marks_it_failed_on_restart(tmp_path: Path) -> None:
    """SIGKILL a real `serve` 5 s into a call: the call stays `active` (nothing could end it); started
    again with the same pod id, serve marks it failed "worker restarted" before it takes calls."""
    with serve(tmp_path, pod_id="pod-7") as srv:
        client = start_call(srv, FIXTURES / "example_call.flac")
        started = _wait_log(srv, "call_started", tracks=1)
        time.sleep(5.0)
        srv.proc.send_signal(signal.SIGKILL)
        assert srv.proc.wait(timeout=10) == -signal.SIGKILL
        _kill(client)
    call_id = str(started["call_id"])
    info = _call_info(srv.env, call_id)
    assert (info.status, info.pod_id) == ("active", "pod-7")
    with serve(tmp_path, pod_id="pod-7") as again:
        marked = _wait_log(again, "stale_call_marked_failed", timeout=30, call_id=call_id)
        assert marked["reason"] == "worker restarted"
        assert again.stop() == 0
    info = _call_info(srv.env, call_id)
    assert (info.status, info.end_reason) == ("failed", "worker restarted") and info.ended_at
    # The dead pod wrote no call.end: the restarted one does, with the call id (issue 19.6).
    entries = json_lines(run_cli(["audit", "show", "--json", "--limit", "1000"], srv.env).stdout)
    ends = [e for e in entries if e.get("action") == "call.end" and e.get("resource") == f"call/{call_id}"]
    assert len(ends) == 1 and ends[0]["details"]["reason"] == "worker restarted"

"""A real `serve` (real aiortc client, real model) whose SQLite database is locked by another process
(`BEGIN EXCLUSIVE`, the way a stuck backup or a second writer holds it): mid-call for 12 s, then again
through SIGTERM. The call never hangs, SIGTERM exits within --drain-seconds + 15 s with the store still
locked, and the audio received before the exit is in the recordings. The SIGTERM drain with a fast store is
tests/test_serve_e2e.py::test_sigterm_during_two_calls_loses_nothing.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve_util import serve, start_call
from tests.support import FIXTURES
from tests.test_faults_serve import _export, _kill, _sweep_clean, _wait_log

pytestmark = pytest.mark.slow

DRAIN_S = 4.0
GRACE_S = 15.0  # the manifests' terminationGracePeriodSeconds is drain + 15


def _lock(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=5.0, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def _active_calls(url: str) -> int:
    with urllib.request.urlopen(url + "/readyz", timeout=10) as resp:
        return int(json.loads(resp.read())["active_calls"])


def test_locked_database_mid_call_and_through_sigterm(tmp_path: Path) -> None:
    with serve(tmp_path, drain_seconds=str(DRAIN_S)) as srv:
        db = Path(srv.env["CONVERSE_DATA_DIR"]) / "converse.db"
        client = start_call(srv, FIXTURES / "call_phi")
        started = _wait_log(srv, "call_started", tracks=2)
        call_id = str(started["call_id"])
        t_call = time.monotonic()
        time.sleep(3.0)
        lock = _lock(db)  # 12 s: track counts, finals and audit writes all wait and fail
        time.sleep(12.0)
        lock.close()
        # The call goes on (or has ended cleanly): it is not stuck, and the server answers.
        time.sleep(3.0)
        assert _active_calls(srv.url) in (0, 1)
        assert '"call_pipeline_failed"' not in srv.log.read_text()
        lock = _lock(db)  # a slow store through the whole drain
        t_term = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(timeout=DRAIN_S + GRACE_S + 30)
        took = time.monotonic() - t_term
        elapsed = t_term - t_call
        lock.close()
        _kill(client)
        print(f"sigterm_exit_s={took:.1f} code={code}")
        assert took <= DRAIN_S + GRACE_S, f"exit took {took:.1f} s"
        assert code in (0, 1), code  # 1: a stuck thread made the watchdog end it (logged)
    for track in (0, 1):  # everything received before the exit is sealed and exportable
        info, _ = _export(srv.env, call_id, track, tmp_path / f"t{track}.wav")
        duration = float(str(info["duration"]))
        assert duration >= min(elapsed, 49.0) - 2.5, (info, elapsed)
    _sweep_clean(srv)

"""Fault injection against real `serve` processes (real aiortc clients, real model): SIGKILL of the worker
mid-call, a client that vanishes without DELETE, and a recordings volume that fills up (a real tmpfs).

Each test ends with the PHI sweep (tests/phi_sweep.py) over what the faulted worker left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.factory import open_stores
from storage.keys import LocalKeyFile
from storage.protocols import CallInfo
from tests.phi_sweep import PhiNeedles, sweep
from tests.serve_util import Server, serve, start_call
from tests.support import FIXTURES, json_lines, need, run_cli

pytestmark = pytest.mark.slow

NEEDLES = PhiNeedles.from_fixture(FIXTURES / "call_phi")


def _wait_log(srv: Server, event: str, timeout: float = 60, **match: object) -> dict[str, object]:
    """The first JSON log line of `serve` with this event (and these fields)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in srv.log.read_text().splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if obj.get("event") == event and all(obj.get(k) == v for k, v in match.items()):
                    return dict(obj)
        time.sleep(0.1)
    raise AssertionError(f"no {event} {match} in serve log: {srv.log.read_text()[-2000:]}")


def _call_info(env: dict[str, str], call_id: str) -> CallInfo:
    async def get() -> CallInfo:
        keys = LocalKeyFile(Path(env["CONVERSE_KEK_FILE"]))
        stores = await open_stores(Path(env["CONVERSE_DATA_DIR"]), keys=keys)
        try:
            return await stores.transcripts.get_call(call_id)
        finally:
            await stores.close()

    return asyncio.run(get())


def _export(env: dict[str, str], call_id: str, track: int, out: Path) -> tuple[dict[str, object], str]:
    res = run_cli(["export", "--call", call_id, "--track", str(track), "-o", str(out), "--json"], env)
    return json.loads(res.stdout), res.stderr


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def _sweep_clean(srv: Server, *texts: str) -> None:
    data = Path(srv.env["CONVERSE_DATA_DIR"])
    hits = sweep([data, srv.log], NEEDLES, texts={f"output {i}": t for i, t in enumerate(texts)})
    assert hits == [], "\n".join(hits)


def test_sigkill_of_serve_mid_call_exports_to_the_last_second(tmp_path: Path) -> None:
    """SIGKILL the worker 8 s into a call: both tracks export (marked truncated: the call never ended)
    with all audio up to at most ~1 s flush interval before the kill, and `audit verify` passes."""
    with serve(tmp_path) as srv:
        client = start_call(srv, FIXTURES / "call_phi")
        started = _wait_log(srv, "call_started", tracks=2)
        t0 = time.monotonic()
        time.sleep(8.0)
        srv.proc.send_signal(signal.SIGKILL)
        elapsed = time.monotonic() - t0
        assert srv.proc.wait(timeout=10) == -signal.SIGKILL
        _kill(client)
    env, call_id = srv.env, str(started["call_id"])
    for track in (0, 1):
        info, stderr = _export(env, call_id, track, tmp_path / f"t{track}.wav")
        assert info["complete"] is False and "truncated" in str(info["warning"]), info
        assert "truncated after record" in stderr
        duration = float(str(info["duration"]))
        # Media starts after ICE/DTLS connects (< ~1 s after call_started); a flush every 1 s.
        assert elapsed - 3.0 <= duration <= elapsed + 0.5, (info, elapsed)
    verify = run_cli(["audit", "verify"], env, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _sweep_clean(srv)


def test_client_vanishing_without_delete_is_timed_out_and_sealed(tmp_path: Path) -> None:
    """SIGKILL the `call` client 10 s into the call (no DELETE, no DTLS close): the worker's no-media
    timeout (3 s) ends the call, seals both tracks (complete recordings, END record written), and the
    transcript of what was said before is stored."""
    with serve(tmp_path, no_media_seconds="3") as srv:
        client = start_call(srv, FIXTURES / "call_phi")
        started = _wait_log(srv, "call_started", tracks=2)
        call_id = str(started["call_id"])
        time.sleep(10.0)
        client.send_signal(signal.SIGKILL)
        _kill(client)
        t_kill = time.monotonic()
        finished = _wait_log(srv, "call_finished", timeout=30, call_id=call_id)
        took = time.monotonic() - t_kill
        assert finished["status"] == "failed" and finished["reason"] == "no media for 3 s", finished
        assert took < 10, f"call ended {took:.1f}s after the client vanished"
        with urllib.request.urlopen(srv.url + "/readyz", timeout=10) as resp:  # the worker is fine
            assert json.loads(resp.read())["active_calls"] == 0
    env = srv.env
    info = _call_info(env, call_id)
    assert (info.status, info.end_reason) == ("failed", "no media for 3 s")
    utts = json_lines(run_cli(["transcripts", "show", call_id, "--json"], env).stdout)
    assert utts, "nothing said before the client vanished was stored"
    assert any("clinic" in u["text"].lower() or "appointment" in u["text"].lower() for u in utts)
    for track in (0, 1):
        exported, _ = _export(env, call_id, track, tmp_path / f"t{track}.wav")
        assert exported["complete"] is True
        assert 8.0 <= float(str(exported["duration"])) <= 11.5, exported
    _sweep_clean(srv)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    can = os.geteuid() == 0
    if can:
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        can = res.returncode == 0
    need(can, "mounting a tmpfs (root with CAP_SYS_ADMIN)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path, leave: int) -> Path:
    """Fill the file system at `path` up to `leave` free bytes."""
    filler = path / "filler"
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_recordings_volume_full_ends_call_cleanly_and_keeps_what_was_written(tmp_path: Path) -> None:
    """The recordings volume (a 1 MB tmpfs, filled to ~48 KB free) runs out mid-call: the call ends
    `failed` with a one-line ENOSPC reason, the worker keeps serving, what reached the disk exports
    (truncated), and once space is freed the next call records in full."""
    recordings = tmp_path / "data" / "recordings"
    with _tmpfs(recordings, "1m"):
        filler = _fill(recordings, leave=48 * 1024)
        with serve(tmp_path) as srv:
            client = start_call(srv, FIXTURES / "call_phi")
            started = _wait_log(srv, "call_started", tracks=2)
            call_id = str(started["call_id"])
            finished = _wait_log(srv, "call_finished", timeout=90, call_id=call_id)
            assert finished["status"] == "failed"
            _kill(client)
            with urllib.request.urlopen(srv.url + "/healthz", timeout=10) as resp:
                assert resp.status == 200
            filler.unlink()  # space is back: the next call is recorded in full
            second = start_call(srv, FIXTURES / "example_call.flac")
            out, err = second.communicate(timeout=120)
            assert second.returncode == 0, err[-2000:]
            result = json.loads(out.strip().splitlines()[-1])
            assert result["server"]["status"] == "ended" and result["server"]["frames_lost"] == 0
        env = srv.env
        info = _call_info(env, call_id)
        assert info.status == "failed"
        assert info.end_reason == "recording storage failed (ENOSPC: No space left on device)"
        complete = []
        for track in (0, 1):  # the track that hit ENOSPC is truncated; the other may still have closed
            exported, _ = _export(env, call_id, track, tmp_path / f"t{track}.wav")
            assert float(str(exported["duration"])) > 1.0, exported
            complete.append(exported["complete"])
        assert False in complete
        exported, _ = _export(env, result["call_id"], 0, tmp_path / "second.wav")
        assert exported["complete"] is True and exported["frames"] == result["frames_sent"][0]
        assert '"recording_store_failed"' in srv.log.read_text()
        _sweep_clean(srv, out)

"""Issue 3's durability promises on real sealed recordings: a SIGKILL loses at most the last second, a KEK
rotation re-wraps keys without touching media, and tampering with a stored recording is named on export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import FIXTURES, REPO, cli_env, json_lines, run_cli

pytestmark = pytest.mark.slow


def _export(
    env: dict[str, str], call_id: str, track: int, out: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        ["export", "--call", call_id, "--track", str(track), "-o", str(out), "--json"], env, check=check
    )


def test_sigkill_mid_call_loses_at_most_the_last_second(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "keys" / "kek.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "replay", "--json", "--realtime", str(FIXTURES / "call_phi")],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    started = json.loads(proc.stdout.readline())
    assert started["event"] == "call_started"
    t0 = time.monotonic()
    time.sleep(6.0)
    os.kill(proc.pid, signal.SIGKILL)
    elapsed = time.monotonic() - t0
    proc.wait(timeout=10)
    proc.stdout.close()
    call_id = started["call_id"]
    for track in (0, 1):
        res = _export(env, call_id, track, tmp_path / f"t{track}.wav")
        info = json.loads(res.stdout)
        assert info["complete"] is False
        assert "truncated" in info["warning"]
        assert "truncated after record" in res.stderr
        # Audio pushed before the kill, less at most one flush interval (1 s) and the encode batch (1 s).
        assert info["duration"] >= elapsed - 2.2, (info, elapsed)
        assert info["duration"] <= elapsed + 1.5


def test_rotation_rewraps_keys_and_old_and_new_recordings_export(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "keys" / "kek.json")
    first = json_lines(run_cli(["replay", "--json", str(FIXTURES / "example_call.flac")], env).stdout)
    call1 = first[0]["call_id"]
    rot1 = json.loads(run_cli(["keys", "rotate", "--json"], env).stdout)
    rot2 = json.loads(run_cli(["keys", "rotate", "--json"], env).stdout)
    assert (rot1["version"], rot2["version"]) == (2, 3)
    for rot in (rot1, rot2):  # the track key and the call's transcript text key, each time
        rewrapped = {kind: k["rewrapped"] for kind, k in rot["kinds"].items()}
        assert rewrapped == {"track": 1, "text": 1, "totp": 0}
    second = json_lines(run_cli(["replay", "--json", str(FIXTURES / "example_call.flac")], env).stdout)
    call2 = second[0]["call_id"]
    sizes = []
    for cid in (call1, call2):
        out = tmp_path / f"{cid}.wav"
        info = json.loads(_export(env, cid, 0, out).stdout)
        assert info["complete"] is True and info["frames"] > 400
        sizes.append(out.stat().st_size)
    assert sizes[0] == sizes[1]
    # The media object itself was never rewritten by rotation.
    status = json.loads(run_cli(["keys", "status", "--json"], env).stdout)
    assert status["version"] == 3


def test_tampered_recording_is_named_on_export(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", tmp_path / "keys" / "kek.json")
    events = json_lines(run_cli(["replay", "--json", str(FIXTURES / "example_call.flac")], env).stdout)
    call_id = events[0]["call_id"]
    [obj] = list((tmp_path / "data").rglob("*.sfr"))
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(obj, 0o600)
    obj.write_bytes(bytes(data))
    res = _export(env, call_id, 0, tmp_path / "x.ogg", check=False)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: call {call_id} track 0: record ")
    assert not (tmp_path / "x.ogg").exists()
    # A cleanly ended call whose recording lost its tail is tampering, not a crash.
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data[: len(data) * 3 // 4]))
    res = _export(env, call_id, 0, tmp_path / "y.ogg", check=False)
    assert res.returncode == 1 and "truncated" in res.stderr

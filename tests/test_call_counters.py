"""`call --sframe-key` never reuses a (key, KID, CTR) across runs (issue 19, item 8): the counters persist in
a counter directory (0600 files named by an HMAC of the key), reserved before use, so a second run (or one
after a crash) continues above every CTR the first could have sent. Driven through `cmd_call.run` against a
real WHIP server (aiortc peers), reading the CTRs off the worker's receive seam."""

from __future__ import annotations

import argparse
import json
import os
import stat
import wave
from pathlib import Path

import pytest

from media.sframe import parse_header
from storage.counters import FileCounterStore
from tests.test_e2ee import KEY_A, TOKEN, MakeServer, bursts, loopback, make_server, seam
from worker.cli import call as cmd_call
from worker.cli.call_client import b64url

__all__ = ["loopback", "make_server", "seam"]  # fixtures, re-exported


def _args(url: str, wav: Path, counters: Path) -> argparse.Namespace:
    return argparse.Namespace(
        url=url,
        fixture=str(wav),
        token=TOKEN,
        tail=0.2,
        json=True,
        sframe_key=b64url(KEY_A),
        kid=7,
        suite=4,
        counter_dir=str(counters),
        media_streams=False,
    )


async def test_a_second_run_with_the_same_key_continues_the_counters(
    make_server: MakeServer, seam: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await make_server()
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(bursts(1.0).tobytes())
    counters = tmp_path / "ctr"
    assert await cmd_call.run(_args(server.url, wav, counters)) == 0
    first = [parse_header(p)[1] for p in seam]
    del seam[:]
    assert await cmd_call.run(_args(server.url, wav, counters)) == 0
    second = [parse_header(p)[1] for p in seam]
    assert first and second and min(second) > max(first)
    assert min(first) == 0 and min(second) == 256  # the first run reserved one block of 256 CTRs
    (mark,) = counters.iterdir()
    assert stat.S_IMODE(mark.stat().st_mode) == 0o600 and stat.S_IMODE(counters.stat().st_mode) == 0o700
    assert KEY_A.hex() not in mark.name and b64url(KEY_A) not in mark.read_text()
    assert b64url(KEY_A) not in json.dumps(capsys.readouterr().out)


def test_a_crashed_run_never_lends_its_counters_again(tmp_path: Path) -> None:
    store = FileCounterStore(tmp_path / "ctr")
    p1 = cmd_call.sframe_protector(b64url(KEY_A), 1, 4, store)
    assert p1 is not None
    sent = [parse_header(p1(b"opus"))[1] for _ in range(3)]  # then the process dies: nothing is flushed
    p2 = cmd_call.sframe_protector(b64url(KEY_A), 1, 4, FileCounterStore(tmp_path / "ctr"))
    assert p2 is not None
    assert parse_header(p2(b"opus"))[1] > max(sent)


def test_counter_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (cmd_call.COUNTER_DIR_ENV, "CONVERSE_DATA_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert cmd_call.counter_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert cmd_call.counter_dir(None) == tmp_path / "state" / "converse-worker" / "sframe-counters"
    monkeypatch.setenv("CONVERSE_DATA_DIR", str(tmp_path / "data"))
    assert cmd_call.counter_dir(None) == tmp_path / "data" / "sframe-counters"
    monkeypatch.setenv(cmd_call.COUNTER_DIR_ENV, str(tmp_path / "env"))
    assert cmd_call.counter_dir(None) == tmp_path / "env"
    assert os.environ.get(cmd_call.SFRAME_KEY_ENV) is None

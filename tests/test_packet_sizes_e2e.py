"""Opus packets of 40 and 60 ms (RFC 6716; SIP gateways, `ptime` clients) from real aiortc clients in their
own processes -> a real `serve` with the real model: the same content words as 20 ms packets, and the
exported recording as long as what was sent (issue 18 item 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.serve_util import Server, call_env, serve
from tests.support import FIXTURES, REPO, json_lines, run_cli

pytestmark = pytest.mark.slow

FIXTURE = FIXTURES / "bench" / "00.opus"
SECONDS = 23.0  # the first five utterances
STOP = frozenset(
    "a an and are do for go i in into is it my of on or since the they to until when you your".split()
)


def _content(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


def _manifest_words() -> set[str]:
    calls = json.loads((FIXTURES / "bench" / "manifest.json").read_text())["calls"]
    utts = next(c for c in calls if c["file"] == FIXTURE.name)["utterances"]
    return _content(" ".join(u["text"] for u in utts if u["end"] <= SECONDS))


def _start(srv: Server, packet_ms: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.packet_client", srv.url, str(FIXTURE), str(packet_ms), str(SECONDS)],
        env=call_env(srv),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_40_and_60_ms_packets_give_the_transcript_and_recording_of_20_ms(tmp_path: Path) -> None:
    with serve(tmp_path) as srv:
        procs = {ms: _start(srv, ms) for ms in (20, 40, 60)}  # at once, as a pod takes calls
        results = {}
        for ms, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-2000:]
            results[ms] = json.loads(out.strip().splitlines()[-1])
    words: dict[int, set[str]] = {}
    for ms, result in results.items():
        server = result["server"]
        assert server["status"] == "ended", (ms, server)
        assert server["frames_lost"] == 0 and server["frames_sealed"] == result["frames_sent"][0], ms
        call_id = result["call_id"]
        utts = json_lines(run_cli(["transcripts", "show", call_id, "--json"], srv.env).stdout)
        words[ms] = _content(" ".join(u["text"] for u in utts))
        wav = tmp_path / f"{ms}.wav"
        run_cli(["export", "--call", call_id, "--track", "0", "-o", str(wav), "--json"], srv.env)
        with wave.open(str(wav)) as w:
            assert w.getnframes() == result["input_samples"][0], ms  # the recording as long as the input
    expected = _manifest_words()
    for ms, got in words.items():
        print(f"{ms} ms: {len(got & expected)}/{len(expected)} content words")
    assert len(words[20] & expected) >= 0.85 * len(expected), sorted(expected - words[20])
    for ms in (40, 60):
        assert len(words[ms] & words[20]) >= 0.9 * len(words[20]), (ms, sorted(words[20] - words[ms]))
        assert len(words[ms] & expected) >= 0.85 * len(expected), (ms, sorted(expected - words[ms]))

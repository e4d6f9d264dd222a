"""`serve` end to end: real aiortc clients (the `call` command, separate processes) -> a real worker with the
real model; transcripts, recordings and metrics are compared with what was sent; SIGTERM loses nothing."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serve_util import TOKEN, serve, start_call
from tests.support import FIXTURES, json_lines, run_cli

pytestmark = pytest.mark.slow


def _finish(proc, timeout: float = 180) -> dict:  # type: ignore[no-untyped-def]
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # the error holds the response socket
            return exc.code, exc.read().decode()


def test_call_is_transcribed_redacted_and_sealed(tmp_path: Path) -> None:
    with serve(tmp_path) as srv:
        assert _get(srv.url + "/healthz")[0] == 200
        assert _get(srv.url + "/readyz")[0] == 200
        result = _finish(start_call(srv, FIXTURES / "call_phi"))
        server = result["server"]
        assert server["status"] == "ended"
        assert server["frames_received"] == server["frames_sealed"] == sum(result["frames_sent"])
        assert server["frames_lost"] == 0
        status, metrics = _get(srv.url + "/metrics")
        assert status == 200
        sealed = re.search(r"^converse_frames_sealed_total (\S+)$", metrics, re.M)
        assert sealed and float(sealed.group(1)) == server["frames_sealed"]
        assert "call_id" not in metrics
    env = srv.env
    call_id = result["call_id"]
    utts = json_lines(run_cli(["transcripts", "show", call_id, "--json"], env).stdout)
    text = " ".join(u["text"] for u in utts).lower()
    for word in ("appointment", "tuesday"):
        assert word in text
    assert "[phone]" in text
    digits = re.sub(r"\D", "", text)
    assert "5551234" not in digits and "1234567" not in digits
    for track in (0, 1):
        info = json.loads(
            run_cli(
                [
                    "export",
                    "--call",
                    call_id,
                    "--track",
                    str(track),
                    "-o",
                    str(tmp_path / f"{track}.ogg"),
                    "--json",
                ],
                env,
            ).stdout
        )
        assert info["complete"] is True and info["frames"] == result["frames_sent"][track]


def test_wrong_token_and_bad_offer_are_refused(tmp_path: Path) -> None:
    with serve(tmp_path) as srv:
        req = urllib.request.Request(
            srv.url + "/whip",
            data=b"v=0\r\nnot sdp",
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"},
        )
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(req, timeout=10)
        bad.value.close()  # the error holds the response socket
        assert bad.value.code == 400
        req.headers["Authorization"] = "Bearer wrong-token-wrong-token"
        with pytest.raises(urllib.error.HTTPError) as unauth:
            urllib.request.urlopen(req, timeout=10)
        assert unauth.value.code == 401
        with unauth.value:
            assert "wrong-token" not in unauth.value.read().decode()


def test_sigterm_during_two_calls_loses_nothing(tmp_path: Path) -> None:
    with serve(tmp_path, drain_seconds="4") as srv:
        calls = [start_call(srv, FIXTURES / "call_phi"), start_call(srv, FIXTURES / "example_call.flac")]
        time.sleep(7)
        code = srv.stop()
        assert code == 0
        for c in calls:
            c.communicate(timeout=60)
    env = srv.env
    listed = json_lines(run_cli(["transcripts", "list", "--json"], env).stdout)
    assert len(listed) == 2 and all(c["status"] == "ended" for c in listed)
    for c in listed:
        utts = json_lines(run_cli(["transcripts", "show", c["call_id"], "--json"], env).stdout)
        assert utts, f"no transcript stored for {c['call_id']}"
        info = json.loads(
            run_cli(
                [
                    "export",
                    "--call",
                    c["call_id"],
                    "--track",
                    "0",
                    "-o",
                    str(tmp_path / f"{c['call_id']}.wav"),
                    "--json",
                ],
                env,
            ).stdout
        )
        assert info["complete"] is True and info["frames"] > 100
    assert "server draining" in srv.log.read_text() or "draining" in srv.log.read_text()


def test_eight_concurrent_calls(tmp_path: Path) -> None:
    with serve(tmp_path) as srv:
        procs = []
        for _ in range(8):  # a pod takes offers one after another, not eight in the same millisecond
            procs.append(start_call(srv, FIXTURES / "example_call.flac"))
            time.sleep(0.3)
        results = [_finish(p, timeout=300) for p in procs]
    env = srv.env
    for r in results:
        s = r["server"]
        # Everything the worker received is sealed, and nothing it received went missing.
        assert s["frames_lost"] == 0 and s["frames_received"] == s["frames_sealed"]
        # Client-side: on a starved 2-core box (8 aiortc clients + the worker + other tests) a client can
        # fall behind at call start; measured 0 missing on an idle machine, up to 2 s when overloaded.
        assert s["frames_received"] >= r["frames_sent"][0] - 100
        utts = json_lines(run_cli(["transcripts", "show", r["call_id"], "--json"], env).stdout)
        text = " ".join(u["text"] for u in utts).lower()
        assert "appointment" in text and "tuesday" in text

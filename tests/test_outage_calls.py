"""Storage outage during a real call: a `serve` pod on the scale-out backend takes a 50 s call while
PostgreSQL and SeaweedFS are stopped for about 10 s and started again. /readyz says degraded meanwhile;
afterwards every frame and every utterance is stored, the spool is empty and the audit chain verifies."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.serve_util import serve, start_call
from tests.servers import PostgresServer, SeaweedServer, new_database
from tests.support import FIXTURES, json_lines, run_cli
from tests.test_audit_pg import locked_bucket

pytestmark = pytest.mark.slow

OUTAGE_S = 10.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def _spool_files(data_dir: Path) -> list[Path]:
    spool = data_dir / "spool"
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


def test_call_survives_database_and_object_store_outage(
    tmp_path: Path, own_servers: tuple[PostgresServer, SeaweedServer], aws_env: None
) -> None:
    pg, s3 = own_servers
    started = time.monotonic()
    db_url = asyncio.run(new_database(pg))
    bucket_url = asyncio.run(locked_bucket(s3))
    (tmp_path / "pod").mkdir()
    settings = {
        "database_url": db_url,
        "object_store_url": bucket_url,
        "admission_max_loop_lag_s": "30",  # a shared CI box lags; this test is not about load
    }
    ready: list[tuple[float, int, str]] = []
    polling = threading.Event()

    with serve(tmp_path / "pod", **settings) as pod:
        assert _get(pod.url + "/readyz")[0] == 200

        def poll() -> None:
            while not polling.is_set():
                status, body = _get(pod.url + "/readyz")
                ready.append((time.monotonic(), status, body))
                time.sleep(0.25)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        call = start_call(pod, FIXTURES / "call_phi")  # two tracks, 50 s
        time.sleep(10)
        assert call.poll() is None, "the call ended before the outage"
        outage_from = time.monotonic()
        stoppers = [threading.Thread(target=server.stop) for server in (pg, s3)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        time.sleep(OUTAGE_S)
        starters = [threading.Thread(target=server.start) for server in (pg, s3)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        outage_to = time.monotonic()
        assert call.poll() is None, "the call ended during the outage"

        out, err = call.communicate(timeout=240)
        assert call.returncode == 0, err[-2000:]
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        server = result["server"]
        assert server["frames_lost"] == 0
        assert server["frames_received"] == server["frames_sealed"] == sum(result["frames_sent"])

        deadline = time.monotonic() + 90  # the spool drains in order once both servers are back
        while _spool_files(tmp_path / "pod" / "data") or _get(pod.url + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, (
                f"spool not drained: {_spool_files(tmp_path / 'pod' / 'data')}"
            )
            time.sleep(0.5)
        polling.set()
        poller.join(timeout=10)

        status, metrics = _get(pod.url + "/metrics")
        assert status == 200
        spooled = re.search(r"^converse_spooled_bytes (\S+)$", metrics, re.M)
        assert spooled and float(spooled.group(1)) > 0
        committed = re.search(r"^converse_utterances_total (\S+)$", metrics, re.M)
        assert committed and int(float(committed.group(1))) == server["utterances"] > 0
        assert pod.stop() == 0

    during = [(status, body) for at, status, body in ready if outage_from <= at <= outage_to]
    assert any(status == 503 and "degraded" in body for status, body in during), during[:5]
    assert not any(status == 503 and "degraded" in body for at, status, body in ready if at < outage_from)
    assert _spool_files(tmp_path / "pod" / "data") == []

    env = pod.env
    call_id = result["call_id"]
    utts = json_lines(run_cli(["transcripts", "show", call_id, "--json"], env).stdout)
    assert len(utts) == server["utterances"]
    assert "appointment" in " ".join(u["text"] for u in utts).lower()
    for track, sent in enumerate(result["frames_sent"]):
        out_file = tmp_path / f"{track}.ogg"
        args = ["export", "--call", call_id, "--track", str(track), "-o", str(out_file), "--json"]
        info = json.loads(run_cli(args, env).stdout)
        assert info["complete"] is True and info["frames"] == sent
    verified = run_cli(["audit", "verify", "--json"], env, check=False)
    assert json.loads(verified.stdout) == {"ok": True, "findings": []}, verified.stdout
    print(f"outage call: {time.monotonic() - started:.1f} s")

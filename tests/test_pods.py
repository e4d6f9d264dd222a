"""Two `converse-worker serve` pods on one PostgreSQL and one S3 store (real servers, real calls).

They take calls side by side; each call's records are readable through the other pod's settings; the audit
log is one chain that verifies from either; the retention sweepers inside both pods and two concurrent
`retention run`s delete what is due exactly once, each deletion audited once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from storage.protocols import CallInfo, OrgSettings
from storage.sql.postgres import PgTranscriptStore
from tests.serve_util import serve, start_call
from tests.servers import PostgresServer, SeaweedServer, new_database
from tests.support import FIXTURES, REPO, json_lines, run_cli
from tests.test_audit_pg import locked_bucket

pytestmark = pytest.mark.slow

ORG = "default"


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


async def _put_settings_and_old_call(db_url: str, old_call: str) -> None:
    store = PgTranscriptStore(db_url)
    try:
        await store.put_settings(OrgSettings(ORG, retention_days=1))
        await store.create_call(
            CallInfo(old_call, ORG, "replay", "2020-01-01T00:00:00.000Z", ended_at="2020-01-01T00:10:00.000Z")
        )
        await store.end_call(old_call, "2020-01-01T00:10:00.000Z", "ended", "hangup")
    finally:
        await store.close()


async def _call_ids(db_url: str) -> set[str]:
    store = PgTranscriptStore(db_url)
    try:
        return {c.call_id for c in await store.list_calls()}
    finally:
        await store.close()


def audit_entries(env: dict[str, str]) -> list[dict[str, Any]]:
    return json_lines(run_cli(["audit", "show", "--json", "--limit", "1000"], env).stdout)


def audit_verify(env: dict[str, str]) -> dict[str, Any]:
    proc = run_cli(["audit", "verify", "--json"], env, check=False)
    result: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == (0 if result["ok"] else 1)
    return result


def test_two_pods_share_the_stores_and_one_audit_chain(
    tmp_path: Path, pg_server: PostgresServer, s3_server: SeaweedServer, aws_env: None
) -> None:
    started = time.monotonic()
    db_url = asyncio.run(new_database(pg_server))
    bucket_url = asyncio.run(locked_bucket(s3_server))
    shared = {
        "database_url": db_url,
        "object_store_url": bucket_url,
        "kek_file": str(tmp_path / "keys" / "kek.json"),  # pods share the KEK (and the audit signing key)
        "retention_interval_seconds": "1",
        "admission_max_loop_lag_s": "30",  # a shared 2-core CI box lags; this test is not about load
    }
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with serve(tmp_path / "a", **shared) as pod_a, serve(tmp_path / "b", **shared) as pod_b:
        calls = [start_call(pod, FIXTURES / "example_call.flac") for pod in (pod_a, pod_b, pod_a, pod_b)]
        results = [_finish(c) for c in calls]
        for r in results:
            s = r["server"]
            assert s["frames_lost"] == 0 and s["frames_received"] == s["frames_sealed"] == r["frames_sent"][0]
        ids = [r["call_id"] for r in results]
        assert len(set(ids)) == 4

        # Every call's records through either pod's settings (the other pod's CLI, its own data dir).
        for i, r in enumerate(results):
            for env in (pod_a.env, pod_b.env):
                utts = json_lines(run_cli(["transcripts", "show", r["call_id"], "--json"], env).stdout)
                text = " ".join(u["text"] for u in utts).lower()
                assert "appointment" in text and "tuesday" in text
            other = (pod_b if i % 2 == 0 else pod_a).env
            out = tmp_path / f"{r['call_id']}.ogg"
            info = json.loads(
                run_cli(
                    ["export", "--call", r["call_id"], "--track", "0", "-o", str(out), "--json"], other
                ).stdout
            )
            assert info["complete"] is True and info["frames"] == r["frames_sent"][0]
        listed = {
            c["call_id"] for c in json_lines(run_cli(["transcripts", "list", "--json"], pod_b.env).stdout)
        }
        assert set(ids) <= listed

        # One audit chain: both pods' WHIP entries, checkpoints by either pod, verified from either.
        run_cli(["audit", "checkpoint"], pod_a.env)
        run_cli(["audit", "checkpoint"], pod_b.env)
        entries = audit_entries(pod_a.env)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert sum(1 for e in entries if e["action"] == "whip.post") == 4
        assert audit_verify(pod_a.env) == {"ok": True, "findings": []}
        assert audit_verify(pod_b.env) == {"ok": True, "findings": []}

        # The sweepers inside both pods (every second) delete a call that is long past retention, once.
        old_call = "old-call-2020"
        asyncio.run(_put_settings_and_old_call(db_url, old_call))
        deadline = time.monotonic() + 60
        while old_call in asyncio.run(_call_ids(db_url)):
            assert time.monotonic() < deadline, "no sweeper deleted the expired call"
            time.sleep(0.5)
        time.sleep(2)  # both sweepers have had another go at it

        # Two `retention run`s at once (one per pod's settings), as of three days from now.
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "worker", "retention", "run", "--json", "--now", later],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for env in (pod_a.env, pod_b.env)
        ]
        reports = []
        for proc in runs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr[-2000:]
            reports.append(json.loads(stdout))
        deleted = [c for rep in reports for c in rep["deleted_calls"]]
        assert sorted(deleted) == sorted(ids)  # each call deleted by exactly one of the runs
        assert asyncio.run(_call_ids(db_url)) == set()
        for env in (pod_a.env, pod_b.env):
            assert json_lines(run_cli(["transcripts", "list", "--json"], env).stdout) == []

        entries = audit_entries(pod_b.env)
        deletions = Counter(e["resource"] for e in entries if e["action"] == "retention.call_deleted")
        assert deletions == Counter({f"call:{c}": 1 for c in [*ids, old_call]})
        sweeps = [e for e in entries if e["action"] == "retention.run" and (e["details"] or {}).get("by")]
        assert sum(e["details"]["deleted"] for e in sweeps) == 1
        codes = (pod_a.stop(), pod_b.stop())
        assert codes == (0, 0)
    final = audit_verify(pod_a.env)
    assert final == {"ok": True, "findings": []}
    print(f"two pods: {time.monotonic() - started:.1f} s")

"""A plain `pip install .` (no `scale` extra) runs every embedded command: each is run here as a user
runs it, in a process where asyncpg and aiobotocore cannot be imported. A scale-out setting on such an
install says in one line which extra it needs."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from tests.serve_util import serve
from tests.support import FIXTURES, cli_env, json_lines, run_cli

BLOCKER = """
import sys

class _NoScaleExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"asyncpg", "aiobotocore", "botocore"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoScaleExtra())
"""


@pytest.fixture
def no_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    monkeypatch.setenv("PYTHONPATH", str(site))  # cli_env and serve copy the environment
    return cli_env(tmp_path / "data", tmp_path / "keys" / "kek.json")


def test_blocker_really_hides_the_scale_extra(no_scale: dict[str, str]) -> None:
    import subprocess

    probe = subprocess.run(
        [sys.executable, "-c", "import asyncpg"], env=no_scale, capture_output=True, text=True, check=False
    )
    assert probe.returncode == 1 and "No module named 'asyncpg'" in probe.stderr


@pytest.mark.slow
def test_embedded_commands_run_without_the_scale_extra(no_scale: dict[str, str], tmp_path: Path) -> None:
    out = run_cli(["replay", "--json", str(FIXTURES / "example_call.flac")], no_scale)
    call_id = next(e["call_id"] for e in json_lines(out.stdout) if e["event"] == "call_started")
    listed = json_lines(run_cli(["transcripts", "list", "--json"], no_scale).stdout)
    assert [c["call_id"] for c in listed] == [call_id]
    assert json_lines(run_cli(["transcripts", "show", call_id, "--json"], no_scale).stdout)
    run_cli(["export", "--call", call_id, "--track", "0", "-o", str(tmp_path / "t0.wav")], no_scale)
    assert (tmp_path / "t0.wav").stat().st_size > 44
    run_cli(["audit", "verify"], no_scale)
    run_cli(["audit", "checkpoint"], no_scale)
    run_cli(["keys", "status"], no_scale)
    run_cli(["migrate"], no_scale)
    run_cli(["retention", "run"], no_scale)
    assert run_cli(["redact"], no_scale, stdin="call 555-123-4567\n").stdout == "call [PHONE]\n"


def test_serve_runs_without_the_scale_extra(no_scale: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    with serve(tmp_path / "srv") as srv:
        with urllib.request.urlopen(srv.url + "/healthz", timeout=10) as r:
            assert r.status == 200
        assert srv.stop() == 0


@pytest.mark.parametrize("command", [["transcripts", "list"], ["migrate"], ["audit", "verify"]])
def test_scale_setting_names_the_missing_extra(no_scale: dict[str, str], command: list[str]) -> None:
    env = {
        **no_scale,
        "CONVERSE_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "CONVERSE_OBJECT_STORE_URL": "s3://b",
    }
    proc = run_cli(command, env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: CONVERSE_DATABASE_URL needs the PostgreSQL/S3 backend, which is not installed"
        " (asyncpg is missing): pip install 'converse-worker[scale]'"
    )
    assert "Traceback" not in proc.stderr

"""A real `serve` and real calls: a caller-chosen variable name never becomes a metric label, a placeholder
or a key of the unsealed `utterances.redactions` column; a name the deployment declares keeps its own."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.serve_util import serve, start_call
from tests.support import FIXTURES, json_lines, run_cli

pytestmark = pytest.mark.slow

PHI_NAME = "callback 555-123-4567 jane.doe@example.com"
CANARIES = ("callback", "CALLBACK", "555", "jane", "JANE", "example")


def _fixture(tmp: Path, name: str, variables: dict[str, str]) -> Path:
    out = tmp / name
    out.mkdir()
    for track in sorted((FIXTURES / "call_phi").glob("*.flac")):
        shutil.copy(track, out / track.name)
    (out / "fixture.json").write_text(json.dumps({"variables": variables}))
    return out


def _call(server, fixture: Path) -> str:  # type: ignore[no-untyped-def]
    proc = start_call(server, fixture)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    return str(json.loads(out.strip().splitlines()[-1])["call_id"])


def test_caller_variable_names_are_not_labels_placeholders_or_columns(tmp_path: Path) -> None:
    caller = _fixture(tmp_path, "caller", {PHI_NAME: "Tuesday"})
    declared = _fixture(tmp_path, "declared", {"appointment_day": "Tuesday"})
    with serve(tmp_path, variable_names="appointment_day") as srv:
        caller_call = _call(srv, caller)
        declared_call = _call(srv, declared)
        with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    labels = set(re.findall(r'^converse_redactions_total\{type="([^"]*)"\}', metrics, re.M))
    assert {"VARIABLE", "APPOINTMENT_DAY"} <= labels
    assert all(re.fullmatch(r"[A-Z_]+", label) for label in labels)
    for canary in CANARIES:
        assert canary not in metrics
    caller_text = " ".join(
        u["text"] for u in json_lines(run_cli(["transcripts", "show", caller_call, "--json"], srv.env).stdout)
    )
    declared_text = " ".join(
        u["text"]
        for u in json_lines(run_cli(["transcripts", "show", declared_call, "--json"], srv.env).stdout)
    )
    assert "[VARIABLE]" in caller_text and "Tuesday" not in caller_text
    assert "[APPOINTMENT_DAY]" in declared_text and "Tuesday" not in declared_text
    assert "CALLBACK" not in caller_text.upper().replace("CALL BACK", "")
    dbs = [
        p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.read_bytes()[:15] == b"SQLite format 3"
    ]
    keys: set[str] = set()
    for path in dbs:
        with sqlite3.connect(path) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "utterances" in tables:
                for (raw,) in conn.execute("SELECT redactions FROM utterances"):
                    keys |= set(json.loads(raw))
    assert "VARIABLE" in keys and "APPOINTMENT_DAY" in keys
    assert all(re.fullmatch(r"[A-Z_]+", k) for k in keys), keys
    for path in dbs:
        raw_bytes = path.read_bytes()
        assert b"callback" not in raw_bytes.lower() and b"jane.doe" not in raw_bytes

"""The command-line contracts: one-line errors, exit codes, redact on stdin, fixture errors, config docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import FIXTURES, REPO, cli_env, json_lines, run_cli
from worker.config import render_markdown


def test_configuration_reference_is_current() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == render_markdown()


def test_redact_command_redacts_stdin_lines(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    lines = "Call me at 555-123-4567 tomorrow.\nNo PHI here, 20 mg twice a day.\nmail jane@example.com\n"
    out = run_cli(["redact"], env, stdin=lines).stdout.splitlines()
    assert out == ["Call me at [PHONE] tomorrow.", "No PHI here, 20 mg twice a day.", "mail [EMAIL]"]


def test_redact_command_with_variables(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    out = run_cli(["redact", "--var", "patient_name=Jane Doe"], env, stdin="This is Jane Doe.\n").stdout
    assert out == "This is [NAME].\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", "broken.wav: "),
        ("empty.flac", b"", "empty.flac: "),
        ("notes.txt", b"hello", "notes.txt: unsupported file type"),
    ],
)
def test_replay_of_a_broken_fixture_fails_in_one_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    bad = tmp_path / name
    bad.write_bytes(content)
    proc = run_cli(["replay", "--json", str(bad)], env, check=False)
    assert proc.returncode == 1
    errors = [e for e in json_lines(proc.stdout) if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["error"].startswith(message)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.slow
def test_a_broken_fixture_does_not_stop_the_others(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    proc = run_cli(
        ["replay", "--json", "--concurrency", "2", str(bad), str(FIXTURES / "example_call.flac")],
        env,
        check=False,
    )
    assert proc.returncode == 1
    events = json_lines(proc.stdout)
    assert [e["fixture"] for e in events if e["event"] == "call_ended"] == ["example_call.flac"]
    assert any(e["event"] == "final" for e in events)


def test_unknown_call_is_a_one_line_error(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    proc = run_cli(["transcripts", "show", "nosuchcall", "--json"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no call nosuchcall"
    proc = run_cli(
        ["export", "--call", "../../etc", "--track", "0", "-o", str(tmp_path / "x.ogg")], env, check=False
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_audit_verify_passes_on_a_fresh_log_and_records_cli_reads(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    run_cli(["transcripts", "list", "--json"], env)
    run_cli(["audit", "checkpoint"], env)
    assert run_cli(["audit", "verify"], env).returncode == 0
    rows = [json.loads(x) for x in run_cli(["audit", "show", "--json"], env).stdout.splitlines()]
    assert any(r["action"] == "cli.list_calls" and r["outcome"] == "allowed" for r in rows)


@pytest.mark.parametrize("value", ["0", "86401", "long"])
def test_serve_refuses_a_bad_max_call_length_in_one_line(tmp_path: Path, value: str) -> None:
    """Capped at a day: retention treats a call that never ended and started two days before its cutoff as
    abandoned (its worker died), which is only safe if no live call lasts that long."""
    env = cli_env(
        tmp_path / "d", tmp_path / "k.json", CONVERSE_MAX_CALL_SECONDS=value, CONVERSE_HTTP_PORT="0"
    )
    proc = run_cli(["serve"], env, check=False, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and value in lines[0]


@pytest.mark.parametrize("value", ["5", "-0.1", "soon"])
def test_serve_refuses_a_bad_speech_batch_window_in_one_line(tmp_path: Path, value: str) -> None:
    env = cli_env(
        tmp_path / "d", tmp_path / "k.json", CONVERSE_SPEECH_BATCH_SECONDS=value, CONVERSE_HTTP_PORT="0"
    )
    proc = run_cli(["serve"], env, check=False, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("error: ")
        and ("speech-batch-seconds" in lines[0] or value in lines[0])
    )


def test_a_configuration_error_says_what_is_wrong_and_which_setting(tmp_path: Path) -> None:
    """Known error types print their own (PHI-free) message, not only their type."""
    env = cli_env(tmp_path / "d", tmp_path / "k.json", CONVERSE_API_TOKEN="short-tok", CONVERSE_HTTP_PORT="0")
    proc = run_cli(["serve"], env, check=False, timeout=60)
    assert (proc.returncode, proc.stderr) == (1, "error: CONVERSE_API_TOKEN must be at least 16 characters\n")
    assert "short-tok" not in proc.stderr


def test_error_lines_of_known_and_unknown_errors() -> None:
    from storage.errors import NotFoundError
    from worker.auth.identity import IdentityError
    from worker.cli.main import error_line

    assert error_line(IdentityError("token expired")) == "token expired"
    assert error_line(NotFoundError("call c1\nnot found")) == "call c1 not found"
    assert error_line(RuntimeError("Jane Doe 555-123-4567")) == "unexpected RuntimeError"

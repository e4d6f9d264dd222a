"""Dropped audit triggers are reported by `audit verify` however many commands ran in between, and only the
explicit `audit repair` recreates them (issue 19, item 8); on SQLite through the CLI and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from storage.audit import Actor
from storage.audit_pg import TRIGGERS, PgAuditLog
from tests.servers import pg_server, pg_url
from tests.support import cli_env, json_lines, run_cli

__all__ = ["pg_server", "pg_url"]  # fixtures, re-exported

ADMIN = Actor("u-admin", "admin@example.org", "10.0.0.7", "admin", "org1")


def test_audit_show_does_not_hide_dropped_triggers(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d", tmp_path / "k.json")
    run_cli(["transcripts", "list"], env)
    con = sqlite3.connect(tmp_path / "d" / "audit.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.commit()
    con.close()
    for _ in range(2):  # each opens the log and appends; neither may recreate the trigger
        run_cli(["audit", "show"], env)
        run_cli(["transcripts", "list"], env)
    proc = run_cli(["audit", "verify", "--json"], env, check=False)
    assert proc.returncode == 1
    assert "append-only triggers were missing: audit_log_no_update" in proc.stdout
    assert run_cli(["audit", "verify"], env, check=False).returncode == 1  # still, in the next process

    repaired = run_cli(["audit", "repair", "--json"], env)
    assert json_lines(repaired.stdout) == [{"triggers_recreated": ["audit_log_no_update"]}]
    assert run_cli(["audit", "verify"], env).returncode == 0
    rows = json_lines(run_cli(["audit", "show", "--json"], env).stdout)
    assert any(r["action"] == "audit.repair" and r["outcome"] == "ok" for r in rows)
    con = sqlite3.connect(tmp_path / "d" / "audit.db")
    try:
        con.execute("UPDATE audit_log SET ts = 'x' WHERE seq = 1")
        raise AssertionError("UPDATE should be refused again")
    except sqlite3.DatabaseError as exc:
        assert "append-only" in str(exc)
    finally:
        con.close()


async def test_pg_repair_recreates_dropped_and_disabled_triggers(pg_url: str, tmp_path: Path) -> None:
    def open_log() -> PgAuditLog:
        return PgAuditLog.for_urls(pg_url, None, data_dir=tmp_path / "d", key_path=tmp_path / "k" / "a.key")

    log = open_log()
    await log.append(ADMIN, "settings.update", "setting:1", "ok")
    await log.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("DROP TRIGGER audit_log_no_delete ON audit_log")
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
    finally:
        await conn.close()
    log = open_log()
    try:
        await log.append(ADMIN, "settings.update", "setting:2", "ok")
        assert [f.kind for f in await log.verify()] == ["triggers_missing"]
        assert await log.repair() == ["audit_log_no_delete", "audit_log_no_update"]
        assert await log.verify() == []
        assert await log.repair() == []
    finally:
        await log.close()
    conn = await asyncpg.connect(pg_url)
    try:
        for sql in ("DELETE FROM audit_log", "UPDATE audit_log SET ts = 'x'"):
            try:
                await conn.execute(sql)
                raise AssertionError(f"{sql} should be refused")
            except asyncpg.exceptions.InsufficientPrivilegeError:
                pass
        assert len(TRIGGERS) == 4
    finally:
        await conn.close()

"""storage.audit_store.AuditLog: append-only SQLite, signed checkpoints, and `verify` naming each tampering.

The attacker here has the database file (sqlite3, DROP TRIGGER, then UPDATE/DELETE/INSERT) and the checkpoint
file, but not the signing key.
"""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import audit
from storage.audit import Actor, AuditError, AuditTamperedError
from storage.audit_store import AuditLog

ADMIN = Actor("u-admin", "admin@example.org", "10.0.0.7", "admin", "org1")
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "audit_log_append_only")
TRIGGERS_MISSING = (
    "append-only triggers were missing: audit_log_append_only, audit_log_no_delete, audit_log_no_update"
)


def clock() -> datetime:
    return datetime(2026, 11, 27, 16, 32, 56, 123000, tzinfo=UTC)


def open_log(tmp_path: Path, **kwargs: object) -> AuditLog:
    return AuditLog.in_data_dir(
        tmp_path, key_path=tmp_path / "keys" / "audit-signing.key", clock=clock, **kwargs
    )


async def fill(log: AuditLog) -> None:
    """Entries 1-6, checkpoint 1 (6 entries; entry 7 records it), 8-9, checkpoint 2 (9; entry 10), 11."""
    for n in range(1, 7):
        outcome = "denied" if n == 3 else "ok"
        await log.append(
            ADMIN, "settings.update", f"setting:{n}", outcome, before={"n": n - 1}, after={"n": n}
        )
    await log.checkpoint()
    for n in (8, 9):
        await log.append(ADMIN, "transcripts.read", f"call:c{n}", "allowed")
    await log.checkpoint()
    await log.append(ADMIN, "calls.list", "org:org1", "allowed")


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[Path]:
    log = open_log(tmp_path)
    await fill(log)
    assert await log.verify() == []
    await log.close()
    yield tmp_path


def attack(tmp_path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(tmp_path / "audit.db")
    for trigger in TRIGGERS:
        con.execute(f"DROP TRIGGER {trigger}")
    for sql in statements:
        con.execute(sql, params if "?" in sql else ())
    con.commit()
    con.close()


async def findings(tmp_path: Path) -> list[str]:
    log = open_log(tmp_path)
    try:
        return [str(f) for f in await log.verify()]
    finally:
        await log.close()


def rows(tmp_path: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(tmp_path / "audit.db")
    try:
        return con.execute("SELECT seq, entry FROM audit_log ORDER BY seq").fetchall()
    finally:
        con.close()


def rehash_from(tmp_path: Path, first: int) -> None:
    """What a careful attacker does after editing entry `first`: recompute every stored hash after it."""
    con = sqlite3.connect(tmp_path / "audit.db")
    prev = bytes.fromhex(
        con.execute("SELECT chain_hash FROM audit_log WHERE seq = ?", (first - 1,)).fetchone()[0]
    )
    for seq, entry in con.execute(
        "SELECT seq, entry FROM audit_log WHERE seq >= ? ORDER BY seq", (first,)
    ).fetchall():
        leaf = audit.leaf_hash(entry.encode())
        prev = audit.chain_hash(prev, leaf)
        con.execute(
            "UPDATE audit_log SET leaf_hash = ?, chain_hash = ? WHERE seq = ?", (leaf.hex(), prev.hex(), seq)
        )
    con.commit()
    con.close()


ROOTS_BROKEN = [
    "checkpoint 1: root hash does not match the first 6 entries",
    "checkpoint 2: root hash does not match the first 9 entries",
]


# -- the log as written -------------------------------------------------------------------------------------


async def test_entries_and_files(filled: Path) -> None:
    log = open_log(filled)
    page = await log.entries(since=0, limit=3)
    assert [e["seq"] for e in page] == [1, 2, 3]
    assert page[2] == {
        "seq": 3,
        "ts": "2026-11-27T16:32:56.123Z",
        "actor": {"user_id": "u-admin", "email": "admin@example.org", "ip": "10.0.0.7", "role": "admin",
                  "org_id": "org1"},
        "action": "settings.update",
        "resource": "setting:3",
        "outcome": "denied",
        "before": {"n": 2},
        "after": {"n": 3},
        "details": None,
    }  # fmt: skip
    record = (await log.entries(since=6, limit=1))[0]
    assert record["action"] == "audit.checkpoint"
    assert (record["resource"], record["actor"]["user_id"]) == ("checkpoint:1", "system")
    assert [e["seq"] for e in await log.entries(since=9)] == [10, 11]
    await log.close()
    for name in ("audit.db", "audit-checkpoints.jsonl", "keys/audit-signing.key"):
        assert stat.S_IMODE((filled / name).stat().st_mode) == 0o600, name
    lines = (filled / "audit-checkpoints.jsonl").read_text().splitlines()
    assert [audit.parse_checkpoint(line)["tree_size"] for line in lines] == [6, 9]
    assert audit.parse_checkpoint(lines[1])["leaves_from"] == 6


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET entry = '{}' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 11",
        "DELETE FROM audit_log",
        "INSERT OR REPLACE INTO audit_log VALUES (3, 't', '{}', 'aa', 'bb')",
        "INSERT INTO audit_log VALUES (3, 't', '{}', 'aa', 'bb') ON CONFLICT(seq) DO UPDATE SET entry = '{}'",
        "INSERT INTO audit_log VALUES (20, 't', '{}', 'aa', 'bb')",
    ],
)
async def test_triggers_refuse_changes(filled: Path, sql: str) -> None:
    con = sqlite3.connect(filled / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match=r"^audit log is append-only: "):
        con.execute(sql)
    con.close()
    assert await findings(filled) == []


async def test_only_repair_restores_dropped_triggers(filled: Path) -> None:
    attack(filled)
    assert await findings(filled) == [TRIGGERS_MISSING]
    assert await findings(filled) == [TRIGGERS_MISSING]  # opening never recreates them: every run reports
    log = open_log(filled)
    try:
        assert await log.repair() == sorted(TRIGGERS)
        assert await log.repair() == []
    finally:
        await log.close()
    assert await findings(filled) == []


# -- tampering, each named --------------------------------------------------------------------------------


async def test_modified_field_is_named(filled: Path) -> None:
    attack(
        filled,
        """UPDATE audit_log SET entry = replace(entry, '"outcome":"denied"', '"outcome":"ok"')
                      WHERE seq = 3""",
    )
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 3: modified (does not match checkpoint 1)",
        *ROOTS_BROKEN,
    ]


async def test_modified_field_with_rewritten_hashes_is_named(filled: Path) -> None:
    attack(
        filled,
        """UPDATE audit_log SET entry = replace(entry, '"outcome":"denied"', '"outcome":"ok"')
                      WHERE seq = 3""",
    )
    rehash_from(filled, 3)
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 3: modified (does not match checkpoint 1)",
        *ROOTS_BROKEN,
    ]


async def test_modified_entry_after_last_checkpoint_is_named(filled: Path) -> None:
    attack(filled, "UPDATE audit_log SET entry = replace(entry, 'calls.list', 'calls.lost') WHERE seq = 11")
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 11: modified (does not match its recorded leaf hash)",
    ]


async def test_changed_chain_hash_is_named(filled: Path) -> None:
    attack(filled, "UPDATE audit_log SET chain_hash = leaf_hash WHERE seq = 11")
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 11: chain hash mismatch (the log was rewritten at or before this entry)",
    ]


async def test_deleted_entry_is_named(filled: Path) -> None:
    attack(filled, "DELETE FROM audit_log WHERE seq = 4")
    assert await findings(filled) == [TRIGGERS_MISSING, "entry 4: removed", *ROOTS_BROKEN]


async def test_swapped_entries_are_named(filled: Path) -> None:
    attack(
        filled,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "entry 2: reordered (found where entry 3 belongs)",
        "entry 3: reordered (found where entry 2 belongs)",
        *ROOTS_BROKEN,
    ]


async def test_inserted_forged_entry_is_named(filled: Path) -> None:
    """A forged copy of entry 5 slipped in before it, the later rows renumbered and the chain recomputed."""
    genuine = dict(rows(filled))[5]
    forged = genuine.replace('"outcome":"ok"', '"outcome":"denied"')
    attack(
        filled,
        "UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= 5",
        "UPDATE audit_log SET seq = -seq WHERE seq < 0",
        "INSERT INTO audit_log VALUES (5, 't', ?, '', '')",
        params=(forged,),
    )
    rehash_from(filled, 5)
    assert await findings(filled) == [TRIGGERS_MISSING, "entry 5: inserted (duplicate seq)", *ROOTS_BROKEN]


async def test_truncated_tail_is_named(filled: Path) -> None:
    attack(filled, "DELETE FROM audit_log WHERE seq > 7")
    assert await findings(filled) == [
        TRIGGERS_MISSING,
        "log truncated: entries 8..9 missing behind checkpoint 2",
    ]


async def test_emptied_log_is_named(filled: Path) -> None:
    attack(filled, "DROP TABLE audit_log")
    assert await findings(filled) == ["log truncated: entries 1..9 missing behind checkpoint 2"]


def drop_line(tmp_path: Path, index: int) -> None:
    path = tmp_path / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    del lines[index]
    path.write_text("".join(lines))


async def test_dropped_first_checkpoint_is_named(filled: Path) -> None:
    drop_line(filled, 0)
    assert await findings(filled) == ["checkpoint 1: missing (the file starts at checkpoint 2)"]


async def test_dropped_last_checkpoint_is_named(filled: Path) -> None:
    drop_line(filled, -1)
    assert await findings(filled) == ["checkpoint 2: missing (recorded by entry 10)"]


async def test_dropped_middle_checkpoint_is_named(filled: Path) -> None:
    log = open_log(filled)
    await log.checkpoint()
    await log.close()
    drop_line(filled, 1)
    assert await findings(filled) == ["checkpoint 2: missing (checkpoint 3 follows checkpoint 1)"]


async def test_forged_checkpoint_signature_is_named(filled: Path) -> None:
    path = filled / "audit-checkpoints.jsonl"
    first, second = path.read_text().splitlines()
    cp = audit.parse_checkpoint(first)
    cp["tree_size"] = 5
    path.write_text(audit.canonical_json(cp).decode() + "\n" + second + "\n")
    assert await findings(filled) == ["checkpoint 1: bad signature"]


async def test_garbled_checkpoint_line_is_named(filled: Path) -> None:
    path = filled / "audit-checkpoints.jsonl"
    path.write_text(path.read_text() + '{"seq": 3, "tree_si\n')
    assert await findings(filled) == ["checkpoint line 3: malformed"]


# -- checkpoints and proofs ---------------------------------------------------------------------------------


async def test_checkpoint_refuses_a_tampered_log(filled: Path) -> None:
    attack(filled, "DELETE FROM audit_log WHERE seq > 7")
    log = open_log(filled)
    with pytest.raises(AuditTamperedError, match=r"^the log has 7 entries, behind checkpoint 2$"):
        await log.checkpoint()
    await log.close()


async def test_checkpoint_refuses_a_rewritten_prefix(filled: Path) -> None:
    attack(filled, "UPDATE audit_log SET entry = replace(entry, 'setting:2', 'setting:X') WHERE seq = 2")
    log = open_log(filled)
    with pytest.raises(AuditTamperedError, match=r"^the log no longer matches checkpoint 2$"):
        await log.checkpoint()
    await log.close()


async def test_inclusion_proofs(filled: Path) -> None:
    log = open_log(filled)
    signed = await log.inclusion_proof(3)
    assert (signed.checkpoint, signed.tree_size) == (2, 9)
    assert signed.verify()
    cp2 = audit.parse_checkpoint((filled / "audit-checkpoints.jsonl").read_text().splitlines()[1])
    assert signed.root_hash.hex() == cp2["root_hash"]
    assert signed.to_json()["leaf_index"] == 2
    tail = await log.inclusion_proof(11)
    assert (tail.checkpoint, tail.tree_size, tail.verify()) == (None, 11, True)
    with pytest.raises(AuditError, match=r"^no audit entry 12$"):
        await log.inclusion_proof(12)
    await log.close()


async def test_maybe_checkpoint(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for _ in range(4):
        await log.append(ADMIN, "calls.list", "org:org1", "allowed")
    assert await log.maybe_checkpoint(every_n=5, every_s=60, now=0) is None
    await log.append(ADMIN, "calls.list", "org:org1", "allowed")
    cp = await log.maybe_checkpoint(every_n=5, every_s=60, now=0)
    assert cp is not None and (cp["seq"], cp["tree_size"]) == (1, 5)
    # Only the checkpoint's own record since: no new checkpoint, however long it has been.
    assert await log.maybe_checkpoint(every_n=5, every_s=60, now=1e9) is None
    await log.append(ADMIN, "calls.list", "org:org1", "allowed")
    cp = await log.maybe_checkpoint(every_n=5, every_s=60, now=1e9)
    assert cp is not None and (cp["seq"], cp["tree_size"]) == (2, 7)
    assert await log.verify() == []
    await log.close()


async def test_two_writers_share_the_log(tmp_path: Path) -> None:
    """A server and a CLI process append and checkpoint the same files."""
    a, b = open_log(tmp_path), open_log(tmp_path)
    await asyncio.gather(
        *(log.append(ADMIN, "calls.list", f"org:{i}", "ok") for i in range(20) for log in (a, b))
    )
    await a.checkpoint()
    await b.append(ADMIN, "calls.list", "org:x", "ok")
    await b.checkpoint()
    await a.append(ADMIN, "calls.list", "org:y", "ok")
    await a.checkpoint()
    assert [e["seq"] for e in await a.entries(limit=1000)] == list(range(1, 46))
    assert await b.verify() == []
    await a.close()
    await b.close()


async def test_scrub_runs_over_values(tmp_path: Path) -> None:
    log = open_log(tmp_path, scrub=lambda text: text.replace("555-0100", "[PHONE]"))
    await log.append(ADMIN, "settings.update", "agent:555-0100", "ok", details={"greeting": "call 555-0100"})
    (entry,) = await log.entries()
    assert (entry["resource"], entry["details"]) == ("agent:[PHONE]", {"greeting": "call [PHONE]"})
    with pytest.raises(AuditError, match=r"^entry holds NaN or Infinity$"):
        await log.append(ADMIN, "x", "y", "ok", details={"v": float("nan")})
    assert [e["seq"] for e in await log.entries()] == [1]
    await log.close()


async def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit-signing.key"
    log = open_log(tmp_path)
    await log.checkpoint()
    await log.close()
    key.chmod(0o644)
    log = open_log(tmp_path)
    with pytest.raises(AuditError, match=r"is readable by group or others; chmod 600 it$"):
        await log.checkpoint()
    await log.close()


async def test_disk_work_runs_on_the_audit_thread(tmp_path: Path) -> None:
    threads: list[str] = []

    def recording_clock() -> datetime:
        threads.append(threading.current_thread().name)
        return clock()

    log = AuditLog.in_data_dir(tmp_path, clock=recording_clock)
    await asyncio.gather(*(log.append(ADMIN, "calls.list", "org:org1", "ok") for _ in range(10)))
    await log.record_system("retention.call_deleted", "call:c1", {"org_id": "org1"})
    await log.checkpoint()
    assert threads and all(name.startswith("audit-log") for name in threads)
    assert [e["seq"] for e in await log.entries()] == list(range(1, 13))
    await log.close()


async def test_entries_survive_a_vandalised_row(filled: Path) -> None:
    attack(filled, "UPDATE audit_log SET entry = 'garbage' WHERE seq = 2")
    log = open_log(filled)
    assert (await log.entries(limit=2))[1] == {"seq": 2, "error": "malformed entry"}
    assert [str(f) for f in await log.verify()] == [
        TRIGGERS_MISSING,
        "entry 2: modified (not a valid audit entry)",
        *ROOTS_BROKEN,
    ]
    await log.close()

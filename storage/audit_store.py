"""The embedded audit log: entries in SQLite (triggers refuse UPDATE and DELETE), signed checkpoints in a
separate append-only JSON-lines file, an Ed25519 signing key in its own 0600 file.

All disk work runs on one dedicated thread (appends are serialised there), so async callers never block the
event loop. Several processes may share the files: appends take SQLite's write lock (BEGIN IMMEDIATE),
checkpoints take an exclusive flock on the checkpoint file.

No PHI in entries: callers pass ids and settings, never transcript text, phone numbers or patient names.
Every string in resource, before, after and details also runs through the injectable `scrub`.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from storage.audit import (
    ACTION_CHECKPOINT,
    SYSTEM_ACTOR,
    ZERO_HASH,
    Actor,
    AuditError,
    AuditTamperedError,
    Finding,
    Frontier,
    InclusionProof,
    StoredEntry,
    canonical_json,
    chain_hash,
    check_signature,
    format_ts,
    inclusion_proof,
    key_id,
    leaf_hash,
    make_checkpoint,
    make_entry,
    parse_checkpoint,
    root_hash,
    verify,
)

T = TypeVar("T")
_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_PAGE: Final = 1000


def load_or_create_ed25519_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 key, creating it 0600 on first use. Refuses a group/world-readable file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        key = Ed25519PrivateKey.generate()
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
            out.flush()
            os.fsync(out.fileno())
        return key
    if path.stat().st_mode & 0o077:
        raise AuditError(f"key file {path} is readable by group or others; chmod 600 it")
    key_obj = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key_obj, Ed25519PrivateKey):
        raise AuditError(f"key file {path} does not hold an Ed25519 private key")
    return key_obj


_TRIGGERS: Final = {
    "no_update": "BEFORE UPDATE ON {t} "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END",
    "no_delete": "BEFORE DELETE ON {t} "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END",
    # Also stops INSERT OR REPLACE, whose implicit delete fires no DELETE trigger.
    "append_only": "BEFORE INSERT ON {t} WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM {t}) "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only: seq must be the next one'); END",
}


def _schema(t: str) -> list[str]:
    """Table and triggers. `t` is a checked identifier (see _TABLE_NAME): SQL cannot bind names."""
    table = (
        f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, entry TEXT NOT NULL, "
        "leaf_hash TEXT NOT NULL, chain_hash TEXT NOT NULL)"
    )
    triggers = [
        f"CREATE TRIGGER IF NOT EXISTS {t}_{name} " + body.format(t=t) for name, body in _TRIGGERS.items()
    ]
    return [table, *triggers]


def _identity(text: str) -> str:
    return text


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _set_wal(con: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """WAL mode, waiting for another process that is switching the same new file: SQLite answers that
    switch's lock at once, without the busy timeout (two writers opening a fresh log raced here)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class AuditLog:
    """Append-only, tamper-evident audit log (the embedded default behind the `AuditLog` protocol)."""

    def __init__(
        self,
        db_path: Path,
        *,
        checkpoint_path: Path,
        key_path: Path,
        table: str = "audit_log",
        scrub: Callable[[str], str] = _identity,
        clock: Callable[[], datetime] = _utcnow,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise AuditError("audit table name must be an SQL identifier")
        self.db_path, self.checkpoint_path, self.key_path = (
            Path(db_path),
            Path(checkpoint_path),
            Path(key_path),
        )
        self._table, self._scrub, self._clock = table, scrub, clock
        self._extra_keys = dict(public_keys or {})
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-log")
        self._con: sqlite3.Connection | None = None
        self._key: Ed25519PrivateKey | None = None
        self._missing_triggers: list[str] = []
        # Tree state this process has folded in (for checkpoints without re-reading the whole log).
        self._frontier = Frontier()
        self._leaves: list[bytes] = []  # leaf hashes after self._base
        self._base = 0
        self._last_cp_time: float | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, key_path: Path | None = None, **kwargs: Any) -> AuditLog:
        """`audit.db` and `audit-checkpoints.jsonl` in the data dir; the key beside the KEK if given."""
        return cls(
            data_dir / "audit.db",
            checkpoint_path=data_dir / "audit-checkpoints.jsonl",
            key_path=key_path or data_dir / "audit-signing.key",
            **kwargs,
        )

    # -- async API ---------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def append(
        self,
        actor: Actor,
        action: str,
        resource: str,
        outcome: str,
        before: object = None,
        after: object = None,
        details: object = None,
    ) -> int:
        """Append one entry; returns its seq (1, 2, ...). Values must be ids and settings, never PHI."""
        entry = make_entry(
            seq=0,
            ts="",
            actor=actor,
            action=action,
            resource=resource,
            outcome=outcome,
            before=before,
            after=after,
            details=details,
            scrub=self._scrub,
        )
        return await self._run(self._append_sync, entry)

    async def record_system(self, action: str, resource: str, details: dict[str, Any]) -> None:
        """A system action that succeeded (the shape of `storage.retention`'s audit callable)."""
        await self.append(SYSTEM_ACTOR, action, resource, "ok", details=details)

    async def entries(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Entries with seq > since, oldest first, at most `limit` (capped at 1000)."""
        return await self._run(self._entries_sync, since, max(0, min(limit, MAX_PAGE)))

    async def checkpoint(self) -> dict[str, Any]:
        """Sign and append a checkpoint of the whole log now; then record it as an entry."""
        return await self._run(self._checkpoint_sync)

    async def maybe_checkpoint(
        self, every_n: int = 100, every_s: float = 60.0, now: float | None = None
    ) -> dict[str, Any] | None:
        """Checkpoint once `every_n` entries or `every_s` seconds (monotonic `now`) passed since the last."""
        now = time.monotonic() if now is None else now
        return await self._run(self._maybe_checkpoint_sync, every_n, every_s, now)

    async def verify(self) -> list[Finding]:
        return await self._run(self._verify_sync)

    async def repair(self) -> list[str]:
        """Recreate missing append-only triggers (an explicit operator action; nothing else recreates them).
        Returns the names recreated."""
        return await self._run(self._repair_sync)

    async def inclusion_proof(self, seq: int) -> InclusionProof:
        """Proof of entry `seq` against the latest checkpoint covering it, else the current unsigned tree."""
        return await self._run(self._inclusion_proof_sync, seq)

    async def close(self) -> None:
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    # -- on the audit thread -----------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._con is not None:
            return self._con
        self.db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600))
        con = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        _set_wal(con)
        con.execute("PRAGMA synchronous=FULL")
        t = self._table
        con.execute(
            "BEGIN IMMEDIATE"
        )  # inspect and create under the write lock: other processes may open too
        try:
            existed = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (t,)
            ).fetchone()
            query = "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name=?"
            present = {name for (name,) in con.execute(query, (t,))}
            if existed:
                # Never recreated on open (that would hide their removal from a later verify, in another
                # process): verify reports them, and only `repair` recreates them.
                self._missing_triggers = sorted({f"{t}_{name}" for name in _TRIGGERS} - present)
            else:
                for statement in _schema(t):
                    con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            con.close()
            raise
        self._con = con
        self._last_cp_time = time.monotonic()
        return con

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_or_create_ed25519_key(self.key_path)
        return self._key

    def _public_keys(self) -> dict[str, Ed25519PublicKey]:
        own = self._signing_key().public_key()
        return {**self._extra_keys, key_id(own): own}

    def _append_sync(self, entry: dict[str, Any]) -> int:
        con, t = self._db(), self._table
        con.execute("BEGIN IMMEDIATE")
        try:
            last = con.execute(f"SELECT seq, chain_hash FROM {t} ORDER BY seq DESC LIMIT 1").fetchone()  # noqa: S608
            seq = int(last[0]) + 1 if last else 1
            try:
                prev_chain = bytes.fromhex(last[1]) if last else ZERO_HASH
            except (ValueError, TypeError):
                prev_chain = ZERO_HASH  # a vandalised row; verify reports it, appends go on
            ts = format_ts(self._clock())
            data = canonical_json({**entry, "seq": seq, "ts": ts})
            leaf = leaf_hash(data)
            con.execute(
                f"INSERT INTO {t} (seq, ts, entry, leaf_hash, chain_hash) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                (seq, ts, data.decode("utf-8"), leaf.hex(), chain_hash(prev_chain, leaf).hex()),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return seq

    def _entries_sync(self, since: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db().execute(
            f"SELECT seq, entry FROM {self._table} WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (since, limit),
        )
        out = []
        for seq, text in rows:
            try:
                entry = json.loads(text)
            except (ValueError, TypeError):
                entry = None
            out.append(entry if isinstance(entry, dict) else {"seq": seq, "error": "malformed entry"})
        return out

    def _stored_rows(self) -> list[StoredEntry]:
        out = []
        for seq, entry, leaf, chain in self._db().execute(
            f"SELECT seq, entry, leaf_hash, chain_hash FROM {self._table} ORDER BY seq"  # noqa: S608
        ):
            out.append(StoredEntry(int(seq), str(entry).encode("utf-8"), _unhex(leaf), _unhex(chain)))
        return out

    def _checkpoint_lines(self) -> list[str]:
        try:
            text = self.checkpoint_path.read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _last_checkpoint(self) -> dict[str, Any] | None:
        """The file's last checkpoint, signature checked (the file is trusted only as far as it verifies)."""
        lines = self._checkpoint_lines()
        if not lines:
            return None
        try:
            cp = parse_checkpoint(lines[-1])
        except AuditError:
            raise AuditTamperedError("the last checkpoint line is malformed") from None
        problem = check_signature(cp, self._public_keys())
        if problem is not None:
            raise AuditTamperedError(f"checkpoint {cp['seq']}: {problem}")
        return cp

    def _fold(self, last: dict[str, Any] | None) -> None:
        """Fold rows this process has not seen into the frontier, refusing gaps and a prefix that no longer
        matches the last checkpoint."""
        rows = self._db().execute(
            f"SELECT seq, entry FROM {self._table} WHERE seq > ? ORDER BY seq",  # noqa: S608
            (self._frontier.size,),
        )
        for seq, text in rows:
            expected = self._frontier.size + 1
            data = str(text).encode("utf-8")
            try:
                claimed = json.loads(data).get("seq")
            except (ValueError, AttributeError):
                claimed = None
            if seq != expected or claimed != expected:
                raise AuditTamperedError(f"entry {expected} is missing or out of place")
            leaf = leaf_hash(data)
            if last is not None and self._frontier.size < last["tree_size"] and not self._leaves:
                self._base = self._frontier.size + 1  # already signed: no need to keep it
            else:
                self._leaves.append(leaf)
            self._frontier.append(leaf)
            if last is not None and self._frontier.size == last["tree_size"]:
                if self._frontier.root().hex() != last["root_hash"]:
                    raise AuditTamperedError(f"the log no longer matches checkpoint {last['seq']}")

    def _checkpoint_sync(self) -> dict[str, Any]:
        self._db()
        fd = os.open(self.checkpoint_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = self._last_checkpoint()
            last_size = last["tree_size"] if last else 0
            if last_size < self._base:
                raise AuditTamperedError("the checkpoint file lost its latest checkpoint")
            trim = min(last_size - self._base, len(self._leaves))  # another process signed these
            del self._leaves[:trim]
            self._base += trim
            self._fold(last)
            size = self._frontier.size
            if last is not None and last_size > size:
                raise AuditTamperedError(f"the log has {size} entries, behind checkpoint {last['seq']}")
            cp = make_checkpoint(
                key=self._signing_key(),
                tree_size=size,
                root=self._frontier.root(),
                time=format_ts(self._clock()),
                previous=last,
                leaves=self._leaves[last_size - self._base :],
            )
            os.write(fd, canonical_json(cp) + b"\n")
            os.fsync(fd)
            self._base, self._leaves = size, []
        finally:
            os.close(fd)  # closing releases the flock
        self._last_cp_time = time.monotonic()
        details = {"checkpoint": cp["seq"], "tree_size": size, "root_hash": cp["root_hash"]}
        entry = make_entry(
            seq=0,
            ts="",
            actor=SYSTEM_ACTOR,
            action=ACTION_CHECKPOINT,
            resource=f"checkpoint:{cp['seq']}",
            outcome="ok",
            details=details,
        )
        self._append_sync(entry)
        return cp

    def _maybe_checkpoint_sync(self, every_n: int, every_s: float, now: float) -> dict[str, Any] | None:
        con = self._db()
        last_row = con.execute(
            f"SELECT seq, entry FROM {self._table} ORDER BY seq DESC LIMIT 1"  # noqa: S608
        ).fetchone()
        size = int(last_row[0]) if last_row else 0
        lines = self._checkpoint_lines()
        covered = parse_checkpoint(lines[-1])["tree_size"] if lines else 0
        pending = size - covered
        try:
            only_record = pending == 1 and json.loads(last_row[1]).get("action") == ACTION_CHECKPOINT
        except (ValueError, AttributeError, TypeError):
            only_record = False
        elapsed = now - (self._last_cp_time if self._last_cp_time is not None else now)
        if pending >= every_n or (pending > 0 and not only_record and elapsed >= every_s):
            return self._checkpoint_sync()
        return None

    def _absent_triggers(self) -> list[str]:
        """Append-only triggers missing now, or when this process opened the log."""
        t = self._table
        query = "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name=?"
        present = {name for (name,) in self._db().execute(query, (t,))}
        return sorted({f"{t}_{name}" for name in _TRIGGERS} - present | set(self._missing_triggers))

    def _repair_sync(self) -> list[str]:
        con = self._db()
        con.execute("BEGIN IMMEDIATE")
        try:
            missing = self._absent_triggers()
            for statement in _schema(self._table):
                con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._missing_triggers = []
        return missing

    def _verify_sync(self) -> list[Finding]:
        rows = self._stored_rows()
        findings = verify(rows, self._checkpoint_lines(), self._public_keys())
        missing = self._absent_triggers()
        if missing:
            names = ", ".join(missing)
            findings.insert(0, Finding("triggers_missing", f"append-only triggers were missing: {names}"))
        return findings

    def _inclusion_proof_sync(self, seq: int) -> InclusionProof:
        rows = self._stored_rows()
        leaves = [leaf_hash(row.data) for row in rows]
        if not 1 <= seq <= len(leaves):
            raise AuditError(f"no audit entry {seq}")
        keys = self._public_keys()
        signed = None
        for line in reversed(self._checkpoint_lines()):
            try:
                cp = parse_checkpoint(line)
            except AuditError:
                continue
            if seq <= cp["tree_size"] <= len(leaves) and check_signature(cp, keys) is None:
                signed = cp
                break
        size = signed["tree_size"] if signed else len(leaves)
        return InclusionProof(
            seq=seq,
            tree_size=size,
            leaf_hash=leaves[seq - 1],
            path=tuple(inclusion_proof(leaves[:size], seq - 1)),
            root_hash=bytes.fromhex(signed["root_hash"]) if signed else root_hash(leaves),
            checkpoint=signed["seq"] if signed else None,
        )

    def _close_sync(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _unhex(value: object) -> bytes | None:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""  # present but unreadable: compares unequal to every hash

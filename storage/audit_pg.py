"""The scale-out audit log: entries in PostgreSQL, one chain for every pod; signed checkpoints outside it.

Same async API and the same sans-IO core (`storage.audit`) as the embedded `storage.audit_store.AuditLog`,
so `audit verify` (CLI and API) names modified, removed, reordered and inserted entries and a truncation
behind the latest checkpoint exactly as it does there.

- Entries: table `audit_log` (migration 0003): seq, ts, the entry's canonical JSON as TEXT, its RFC 9162
  leaf hash and the chain hash. Triggers refuse UPDATE, DELETE, TRUNCATE and an INSERT that is not the next
  seq; `verify` reports a trigger that is missing or disabled.
- One chain across pods: an append takes `pg_advisory_xact_lock(APPEND_LOCK)` and, in the same transaction,
  reads the last row and inserts seq = last + 1 with the chain continuing from that row's chain hash, so the
  entries of every pod (and of CLI processes) form one gap-free sequence. The lock is released at commit.
- Checkpoints: written through a `storage.audit_sinks.CheckpointSink` (an Object-Locked S3 object per
  checkpoint in scale-out; a local append-only file otherwise), under a second advisory lock
  (`CHECKPOINT_LOCK`), so checkpoints of several pods form one signed sequence too.
- Signing key: every pod signs with the same Ed25519 key (`audit-signing.key` beside the KEK file, which
  pods must share anyway to read each other's recordings; in Kubernetes mount it from the same Secret).
  `verify` also accepts the public keys passed as `public_keys` (e.g. a retired key); a checkpoint signed by
  any other key is reported ("signed by unknown key"), and such a pod cannot extend the sequence.

No PHI in entries: callers pass ids and settings; every string also runs through the injectable `scrub`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage import migrate as migrations
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
from storage.audit_sinks import CheckpointSink, FileCheckpointSink, S3CheckpointSink
from storage.audit_store import MAX_PAGE, load_or_create_ed25519_key
from storage.errors import StorageUnavailableError, StoreClosedError
from storage.pg_store import _UNAVAILABLE, ACQUIRE_TIMEOUT_S, COMMAND_TIMEOUT_S, describe_url

log = structlog.get_logger("storage.audit_pg")


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


APPEND_LOCK: Final = _lock_key("converse-worker/audit-append")
CHECKPOINT_LOCK: Final = _lock_key("converse-worker/audit-checkpoint")
TRIGGERS: Final = (
    "audit_log_append_only",
    "audit_log_no_delete",
    "audit_log_no_truncate",
    "audit_log_no_update",
)
# What `repair` recreates (as migration 0003 created them); the functions are replaced too, in case they went.
_REPAIR_FUNCTIONS: Final = (
    "CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION 'audit log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; "
    "END $$",
    "CREATE OR REPLACE FUNCTION audit_log_next_seq() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log) THEN "
    "RAISE EXCEPTION 'audit log is append-only: seq must be the next one' "
    "USING ERRCODE = 'insufficient_privilege'; END IF; RETURN NEW; END $$",
)
_REPAIR_TRIGGERS: Final = {
    "audit_log_no_update": "BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()",
    "audit_log_no_delete": "BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()",
    "audit_log_no_truncate": "BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT "
    "EXECUTE FUNCTION audit_log_refuse()",
    "audit_log_append_only": "BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_next_seq()",
}
_FOLD_PAGE: Final = 5000
Conn = Any  # asyncpg.Connection (untyped)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _identity(text: str) -> str:
    return text


def _unhex(value: object) -> bytes | None:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""  # present but unreadable: compares unequal to every hash


class PgAuditLog:
    """Append-only, tamper-evident audit log on PostgreSQL (the scale-out `AuditLog`)."""

    def __init__(
        self,
        database_url: str,
        *,
        sink: CheckpointSink,
        key_path: Path,
        scrub: Callable[[str], str] = _identity,
        clock: Callable[[], datetime] = _utcnow,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self._url = database_url
        self.where = describe_url(database_url)
        self.sink = sink
        self.key_path = Path(key_path)
        self._scrub, self._clock = scrub, clock
        self._extra_keys = dict(public_keys or {})
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._key: Ed25519PrivateKey | None = None
        # Tree state this process has folded in (as in the embedded log): the frontier over entries
        # 1..size, and the leaf hashes after `_base` that no checkpoint seen so far covers.
        self._frontier = Frontier()
        self._leaves: list[bytes] = []
        self._base = 0
        self._last_cp_time: float | None = None
        self._last_cp_seen: int | None = None
        self.notes: list[str] = []  # what the last verify noticed that is not a finding

    @classmethod
    def for_urls(
        cls,
        database_url: str,
        object_store_url: str | None,
        *,
        data_dir: Path,
        key_path: Path,
        **kwargs: Any,
    ) -> PgAuditLog:
        """Checkpoints in the object store if one is configured, else `<data_dir>/audit-checkpoints.jsonl`."""
        sink: CheckpointSink
        if object_store_url:
            sink = S3CheckpointSink(object_store_url)
        else:
            sink = FileCheckpointSink(Path(data_dir) / "audit-checkpoints.jsonl")
        return cls(database_url, sink=sink, key_path=key_path, **kwargs)

    # -- plumbing ----------------------------------------------------------------------------------------

    async def _ensure_pool(self) -> Any:
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self._url, min_size=0, max_size=4, command_timeout=COMMAND_TIMEOUT_S
                )
                try:
                    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                        if await migrations.pg_is_empty(conn):
                            await migrations.migrate_postgres(conn)
                        await migrations.check_postgres_schema(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
                self._last_cp_time = time.monotonic()
            return self._pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._closed:
            raise StoreClosedError(f"audit log {self.where} is closed")
        try:
            pool = await self._ensure_pool()
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"postgresql {self.where}: {type(exc).__name__}: {exc}") from None

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_or_create_ed25519_key(self.key_path)
        return self._key

    def _public_keys(self) -> dict[str, Ed25519PublicKey]:
        own = self._signing_key().public_key()
        return {**self._extra_keys, key_id(own): own}

    async def open(self) -> None:
        """Connect, check the schema and the checkpoint store, and load the signing key now (`serve` calls
        this at start, so a misconfiguration fails early and no first request pays for the setup)."""
        async with self._conn():
            pass
        if isinstance(self.sink, S3CheckpointSink) and not await self.sink.object_locked():
            log.warning("audit_checkpoints_unprotected", where=self.sink.where)
        await asyncio.to_thread(self._signing_key)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._opening:
            pool, self._pool = self._pool, None
        try:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=5.0)
                except _UNAVAILABLE:
                    pool.terminate()
        finally:
            await self.sink.close()

    # -- async API (as storage.audit_store.AuditLog) -----------------------------------------------------

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
        """Append one entry to the shared chain; returns its seq. Values are ids and settings, never PHI."""
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
        return await self._append_entry(entry)

    async def record_system(self, action: str, resource: str, details: dict[str, Any]) -> None:
        """A system action that succeeded (the shape of `storage.retention`'s audit callable)."""
        await self.append(SYSTEM_ACTOR, action, resource, "ok", details=details)

    async def _append_entry(self, entry: dict[str, Any]) -> int:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            last = await conn.fetchrow("SELECT seq, chain_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = int(last[0]) + 1 if last else 1
            try:
                prev_chain = bytes.fromhex(last[1]) if last else ZERO_HASH
            except (ValueError, TypeError):
                prev_chain = ZERO_HASH  # a vandalised row; verify reports it, appends go on
            ts = format_ts(self._clock())
            data = canonical_json({**entry, "seq": seq, "ts": ts})
            leaf = leaf_hash(data)
            await conn.execute(
                "INSERT INTO audit_log (seq, ts, entry, leaf_hash, chain_hash) VALUES ($1, $2, $3, $4, $5)",
                seq,
                ts,
                data.decode("utf-8"),
                leaf.hex(),
                chain_hash(prev_chain, leaf).hex(),
            )
        return seq

    async def entries(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Entries with seq > since, oldest first, at most `limit` (capped at 1000)."""
        limit = max(0, min(limit, MAX_PAGE))
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT seq, entry FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", since, limit
            )
        out = []
        for seq, text in rows:
            try:
                entry = json.loads(text)
            except (ValueError, TypeError):
                entry = None
            out.append(entry if isinstance(entry, dict) else {"seq": seq, "error": "malformed entry"})
        return out

    async def checkpoint(self) -> dict[str, Any]:
        """Sign and store a checkpoint of the whole log now; then record it as an entry."""
        cp = await self._checkpoint_locked(None)
        assert cp is not None
        return cp

    async def maybe_checkpoint(
        self, every_n: int = 100, every_s: float = 60.0, now: float | None = None
    ) -> dict[str, Any] | None:
        """Checkpoint once `every_n` entries or `every_s` seconds (monotonic `now`) passed since the latest
        checkpoint (by any pod); decided under the checkpoint lock, so pods do not checkpoint twice."""
        now = time.monotonic() if now is None else now
        return await self._checkpoint_locked((every_n, every_s, now))

    async def verify(self) -> list[Finding]:
        rows, table_missing = await self._stored_rows()
        contents = await self.sink.read()
        findings = verify(rows, contents.lines, self._public_keys())
        missing = list(TRIGGERS) if table_missing else await self._missing_triggers()
        if missing:
            names = ", ".join(missing)
            findings.insert(0, Finding("triggers_missing", f"append-only triggers were missing: {names}"))
        if table_missing:
            findings.insert(0, Finding("truncated", "the audit_log table is missing"))
        findings.extend(contents.findings)
        self.notes = list(contents.notes)
        for note in self.notes:
            log.warning("audit_checkpoints_unprotected", note=note, where=self.sink.where)
        return findings

    async def repair(self) -> list[str]:
        """Recreate (or re-enable) missing append-only triggers: an explicit operator action, nothing else
        does it. Returns the names repaired."""
        missing = await self._missing_triggers()
        if not missing:
            return []
        async with self._conn() as conn, conn.transaction():
            for statement in _REPAIR_FUNCTIONS:
                await conn.execute(statement)
            for name in missing:
                await conn.execute(f"DROP TRIGGER IF EXISTS {name} ON audit_log")  # a disabled one
                await conn.execute(f"CREATE TRIGGER {name} {_REPAIR_TRIGGERS[name]}")
        return missing

    async def inclusion_proof(self, seq: int) -> InclusionProof:
        """Proof of entry `seq` against the latest checkpoint covering it, else the current unsigned tree."""
        rows, _ = await self._stored_rows()
        leaves = [leaf_hash(row.data) for row in rows]
        if not 1 <= seq <= len(leaves):
            raise AuditError(f"no audit entry {seq}")
        keys = self._public_keys()
        signed = None
        for line in reversed((await self.sink.read()).lines):
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

    # -- internals -----------------------------------------------------------------------------------------

    async def _stored_rows(self) -> tuple[list[StoredEntry], bool]:
        """Every row in seq order, and whether the table is gone altogether."""
        try:
            async with self._conn() as conn:
                records = await conn.fetch(
                    "SELECT seq, entry, leaf_hash, chain_hash FROM audit_log ORDER BY seq"
                )
        except asyncpg.exceptions.UndefinedTableError:
            return [], True
        out = [
            StoredEntry(int(seq), str(entry).encode("utf-8"), _unhex(leaf), _unhex(chain))
            for seq, entry, leaf, chain in records
        ]
        return out, False

    async def _missing_triggers(self) -> list[str]:
        """Append-only triggers that are absent or disabled now."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT tgname, tgenabled FROM pg_trigger "
                "WHERE tgrelid = to_regclass('audit_log') AND NOT tgisinternal"
            )
        # tgenabled is a "char": asyncpg gives it as bytes (b"D" when disabled)
        enabled = {str(name) for name, state in rows if state not in ("D", b"D")}
        return sorted(set(TRIGGERS) - enabled)

    async def _latest_checkpoint(self) -> dict[str, Any] | None:
        """The sink's newest checkpoint, signature checked (trusted only as far as it verifies)."""
        text = await self.sink.latest()
        if text is None:
            return None
        try:
            cp = parse_checkpoint(text)
        except AuditError:
            raise AuditTamperedError("the latest checkpoint is malformed") from None
        problem = check_signature(cp, self._public_keys())
        if problem is not None:
            raise AuditTamperedError(f"checkpoint {cp['seq']}: {problem}")
        return cp

    async def _fold(self, conn: Conn, last: dict[str, Any] | None, upto: int) -> None:
        """Fold rows up to `upto` this process has not seen into the frontier, refusing gaps and a prefix
        that no longer matches the last checkpoint."""
        while self._frontier.size < upto:
            rows = await conn.fetch(
                "SELECT seq, entry FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                self._frontier.size,
                upto,
                _FOLD_PAGE,
            )
            if not rows:
                raise AuditTamperedError(f"entry {self._frontier.size + 1} is missing or out of place")
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

    async def _checkpoint_locked(self, policy: tuple[int, float, float] | None) -> dict[str, Any] | None:
        """Under the checkpoint lock: (with a policy, decide whether one is due, then) sign and store."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK)
            last = await self._latest_checkpoint()
            last_size = last["tree_size"] if last else 0
            top = await conn.fetchrow("SELECT seq, entry FROM audit_log ORDER BY seq DESC LIMIT 1")
            size = int(top[0]) if top else 0
            if policy is not None:
                every_n, every_s, now = policy
                seen = last["seq"] if last else None
                if seen != self._last_cp_seen:  # another pod (or run) checkpointed: the clock restarts
                    self._last_cp_seen, self._last_cp_time = seen, now
                pending = size - last_size
                try:
                    only_record = pending == 1 and json.loads(top[1]).get("action") == ACTION_CHECKPOINT
                except (ValueError, AttributeError, TypeError):
                    only_record = False
                elapsed = now - (self._last_cp_time if self._last_cp_time is not None else now)
                if not (pending >= every_n or (pending > 0 and not only_record and elapsed >= every_s)):
                    return None
            if last_size < self._base:
                raise AuditTamperedError("the checkpoint store lost its latest checkpoint")
            trim = min(last_size - self._base, len(self._leaves))  # another pod signed these
            del self._leaves[:trim]
            self._base += trim
            await self._fold(conn, last, size)
            if last is not None and last_size > self._frontier.size:
                raise AuditTamperedError(
                    f"the log has {self._frontier.size} entries, behind checkpoint {last['seq']}"
                )
            size = self._frontier.size
            cp = make_checkpoint(
                key=self._signing_key(),
                tree_size=size,
                root=self._frontier.root(),
                time=format_ts(self._clock()),
                previous=last,
                leaves=self._leaves[last_size - self._base :],
            )
            await self.sink.write(cp)
            self._base, self._leaves = size, []
        self._last_cp_time = time.monotonic() if policy is None else policy[2]
        self._last_cp_seen = cp["seq"]
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
        await self._append_entry(entry)
        return cp

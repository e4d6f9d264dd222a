"""Tamper-evident audit log core: canonical JSON entries, an RFC 9162 Merkle tree, signed checkpoints, and
`verify`. Sans-IO: no files, no asyncio; callers pass bytes, dicts and times. `storage.audit_store` is the
SQLite + append-only-file shell around it.

Entry: {seq, ts, actor {user_id, email, ip, role, org_id}, action, resource, outcome, before, after, details};
its canonical JSON bytes are the Merkle leaf data. Beside each entry the store keeps its leaf hash and a chain
hash H(prev_chain || leaf_hash). A checkpoint signs (Ed25519) the tree size and root hash, the hash and number
of the previous checkpoint, and the leaf hashes added since it, so `verify` can name a changed entry even when
an attacker rewrote the stored hashes too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from storage.errors import StorageError

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()  # RFC 9162 2.1.1: MTH({}) = HASH()
ZERO_HASH: Final = bytes(HASH_SIZE)  # chain start and the first checkpoint's prev_hash
OUTCOMES: Final = frozenset({"allowed", "denied", "ok", "error"})
ACTION_CHECKPOINT: Final = "audit.checkpoint"  # the entry a store appends after writing each checkpoint
_CHECKPOINT_FIELDS: Final = ("seq", "tree_size", "root_hash", "time", "key_id", "prev_hash", "leaves_from")


class AuditError(StorageError):
    """An audit entry or checkpoint that cannot be built or read. Messages never carry entry values."""


class AuditTamperedError(AuditError):
    """The stored log no longer matches what was signed; run `audit verify` for the findings."""


class ProofError(AuditError):
    """A Merkle proof was asked for a leaf or size outside the tree."""


# -- canonical JSON ----------------------------------------------------------------------------------------


def _check_json(value: object) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise AuditError("entry string is not valid UTF-8") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError("entry holds NaN or Infinity")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError(f"entry object key of type {type(key).__name__} is not a string")
            _check_json(key)
            _check_json(item)
    else:
        raise AuditError(f"entry value of type {type(value).__name__} is not JSON")


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not ASCII-escaped); NaN, Infinity and non-string keys refused."""
    _check_json(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def format_ts(when: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z, e.g. 2026-11-27T16:32:56.123Z."""
    if when.tzinfo is None:
        raise AuditError("timestamp must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted. Staff identifiers, never patient data."""

    user_id: str
    email: str | None = None
    ip: str | None = None
    role: str | None = None
    org_id: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "user_id": self.user_id,
            "email": self.email,
            "ip": self.ip,
            "role": self.role,
            "org_id": self.org_id,
        }


SYSTEM_ACTOR: Final = Actor(user_id="system", role="system")


def _scrubbed(value: object, scrub: Callable[[str], str]) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrubbed(item, scrub) for item in value]
    if isinstance(value, Mapping):
        return {key: _scrubbed(item, scrub) for key, item in value.items()}
    return value


def make_entry(
    *,
    seq: int,
    ts: str,
    actor: Actor,
    action: str,
    resource: str,
    outcome: str,
    before: object = None,
    after: object = None,
    details: object = None,
    scrub: Callable[[str], str] = lambda text: text,
) -> dict[str, Any]:
    """Build and validate one entry; `scrub` runs over every string in resource, before, after, details."""
    if outcome not in OUTCOMES:
        raise AuditError(f"outcome must be one of {sorted(OUTCOMES)}")
    if not action:
        raise AuditError("action must not be empty")
    entry: dict[str, Any] = {
        "seq": seq,
        "ts": ts,
        "actor": actor.to_json(),
        "action": action,
        "resource": scrub(resource),
        "outcome": outcome,
        "before": _scrubbed(before, scrub),
        "after": _scrubbed(after, scrub),
        "details": _scrubbed(details, scrub),
    }
    canonical_json(entry)  # validate now, before anything is written
    return entry


# -- RFC 9162 Merkle tree (https://www.rfc-editor.org/rfc/rfc9162#section-2.1) ----------------------------


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def chain_hash(prev_chain: bytes, leaf: bytes) -> bytes:
    """The per-entry running hash kept beside each row: H(prev_chain || leaf_hash)."""
    return hashlib.sha256(prev_chain + leaf).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_root(leaves, lo, lo + k), _root(leaves, lo + k, hi))


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (RFC 9162 2.1.1)."""
    return _root(leaves, 0, len(leaves)) if leaves else EMPTY_ROOT


class Frontier:
    """The perfect-subtree roots of a growing tree: append leaf hashes, read the root of every prefix."""

    __slots__ = ("_nodes", "size")

    def __init__(self) -> None:
        self._nodes: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.size = 0

    def append(self, leaf: bytes) -> None:
        height, value = 0, leaf
        while self._nodes and self._nodes[-1][0] == height:
            value = node_hash(self._nodes.pop()[1], value)
            height += 1
        self._nodes.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        value = self._nodes[-1][1]
        for _, left in reversed(self._nodes[:-1]):
            value = node_hash(left, value)
        return value


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1, leaf to root."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} is outside a tree of size {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_root(leaves, lo, lo + k))
            lo += k
    return path[::-1]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 steps 1-4; raises ProofError where the RFC says "fail"."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("proof hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ProofError:
        return False


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1 (n = len(leaves))."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ProofError(f"size {old_size} is outside a tree of size {n}")
    if old_size in (0, n):
        return []
    out: list[bytes] = []
    m, lo, hi, complete = old_size, 0, n, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append(_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            out.append(_root(leaves, lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    if not complete:
        out.append(_root(leaves, lo, hi))
    return out[::-1]


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 2.1.4.2, with the trivial cases (equal sizes, empty old tree) of the reference verifier."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Proof that entry `seq` is leaf `seq - 1` of a tree with root `root_hash` (signed by `checkpoint`)."""

    seq: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root_hash: bytes
    checkpoint: int | None  # the signed checkpoint whose root this is; None: the current, unsigned tree

    def verify(self) -> bool:
        return verify_inclusion(self.seq - 1, self.tree_size, self.leaf_hash, self.path, self.root_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "leaf_index": self.seq - 1,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "path": [p.hex() for p in self.path],
            "root_hash": self.root_hash.hex(),
            "checkpoint": self.checkpoint,
        }


# -- signed checkpoints --------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_hash(checkpoint: Mapping[str, Any]) -> str:
    """What the next checkpoint's prev_hash holds: SHA-256 of the whole signed checkpoint, canonical JSON."""
    return hashlib.sha256(canonical_json(checkpoint)).hexdigest()


def make_checkpoint(
    *,
    key: Ed25519PrivateKey,
    tree_size: int,
    root: bytes,
    time: str,
    previous: Mapping[str, Any] | None,
    leaves: Sequence[bytes],
) -> dict[str, Any]:
    """Checkpoint `previous.seq + 1` over `tree_size` entries; `leaves` are those after previous.tree_size."""
    leaves_from = int(previous["tree_size"]) if previous else 0
    if leaves_from + len(leaves) != tree_size:
        raise AuditError(f"checkpoint leaves cover {leaves_from}+{len(leaves)} entries, not {tree_size}")
    body: dict[str, Any] = {
        "seq": int(previous["seq"]) + 1 if previous else 1,
        "tree_size": tree_size,
        "root_hash": root.hex(),
        "time": time,
        "key_id": key_id(key.public_key()),
        "prev_hash": checkpoint_hash(previous) if previous else ZERO_HASH.hex(),
        "leaves_from": leaves_from,
        "leaves": [leaf.hex() for leaf in leaves],
    }
    body["signature"] = base64.b64encode(key.sign(canonical_json(body))).decode("ascii")
    return body


def parse_checkpoint(raw: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    """A checkpoint line or dict with its fields type-checked; AuditError if malformed."""
    try:
        cp = dict(raw) if isinstance(raw, Mapping) else json.loads(raw)
        ok = isinstance(cp, dict) and all(f in cp for f in (*_CHECKPOINT_FIELDS, "leaves", "signature"))
        ok = ok and all(type(cp[f]) is int and cp[f] >= 0 for f in ("seq", "tree_size", "leaves_from"))
        ok = ok and all(
            isinstance(cp[f], str) for f in ("root_hash", "time", "key_id", "prev_hash", "signature")
        )
        ok = ok and isinstance(cp["leaves"], list) and all(isinstance(x, str) for x in cp["leaves"])
        if ok:
            for hexed in (cp["root_hash"], cp["prev_hash"], *cp["leaves"]):
                if len(bytes.fromhex(hexed)) != HASH_SIZE:
                    ok = False
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise AuditError("malformed checkpoint")
    return cp


def check_signature(checkpoint: Mapping[str, Any], public_keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """None when the signature verifies, else why not."""
    public_key = public_keys.get(checkpoint["key_id"])
    if public_key is None:
        return f"signed by unknown key {checkpoint['key_id']}"
    body = {k: v for k, v in checkpoint.items() if k != "signature"}
    try:
        public_key.verify(base64.b64decode(checkpoint["signature"], validate=True), canonical_json(body))
    except (InvalidSignature, ValueError):
        return "bad signature"
    return None


# -- verify --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One stored row: the entry's canonical JSON bytes and the hashes recorded beside it."""

    seq: int  # the row's position key
    data: bytes
    leaf_hash: bytes | None = None
    chain_hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem `verify` found. `kind`: modified, removed, reordered, inserted, chain, truncated,
    checkpoint_missing, checkpoint_order, checkpoint_chain, checkpoint_root, checkpoint_malformed,
    bad_signature, triggers_missing."""

    kind: str
    message: str
    seq: int | None = None
    checkpoint: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class _Row:
    pos: int
    seq: int
    leaf: bytes
    stored: StoredEntry
    entry: Mapping[str, Any] | None
    flagged: bool = field(default=False)


def _normalise(pos: int, item: StoredEntry | bytes | Mapping[str, Any]) -> _Row:
    if isinstance(item, StoredEntry):
        stored = item
    elif isinstance(item, bytes):
        stored = StoredEntry(seq=pos + 1, data=item)
    else:
        stored = StoredEntry(seq=pos + 1, data=canonical_json(item))
    try:
        entry = json.loads(stored.data)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or type(entry.get("seq")) is not int:
        return _Row(pos, stored.seq, leaf_hash(stored.data), stored, None)
    return _Row(pos, entry["seq"], leaf_hash(stored.data), stored, entry)


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}..{last}"


def _check_checkpoints(
    raws: Iterable[Mapping[str, Any] | str | bytes], public_keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[dict[str, Any]], list[Finding], set[int]]:
    """(checkpoints with good signatures, findings, every checkpoint seq seen in the file)."""
    good: list[dict[str, Any]] = []
    findings: list[Finding] = []
    seen: set[int] = set()
    prev: dict[str, Any] | None = None
    prev_good = False
    for lineno, raw in enumerate(raws, 1):
        try:
            cp = parse_checkpoint(raw)
        except AuditError:
            findings.append(Finding("checkpoint_malformed", f"checkpoint line {lineno}: malformed"))
            prev, prev_good = None, False
            continue
        k = cp["seq"]
        seen.add(k)
        problem = check_signature(cp, public_keys)
        if problem is not None:
            findings.append(Finding("bad_signature", f"checkpoint {k}: {problem}", checkpoint=k))
        expected = prev["seq"] + 1 if prev else 1
        if prev is not None and k < expected:
            findings.append(
                Finding(
                    "checkpoint_order",
                    f"checkpoint {k}: out of order (after checkpoint {prev['seq']})",
                    None,
                    k,
                )
            )
            continue
        for missing in range(expected, k):
            why = (
                f"checkpoint {k} follows checkpoint {prev['seq']}"
                if prev
                else f"the file starts at checkpoint {k}"
            )
            findings.append(
                Finding("checkpoint_missing", f"checkpoint {missing}: missing ({why})", None, missing)
            )
        if k == expected and problem is None and prev is not None and prev_good:
            if cp["prev_hash"] != checkpoint_hash(prev):
                msg = f"checkpoint {k}: does not chain to checkpoint {prev['seq']}"
                findings.append(Finding("checkpoint_chain", msg, None, k))
            elif cp["tree_size"] < prev["tree_size"]:
                msg = f"checkpoint {k}: tree size {cp['tree_size']} is below checkpoint {prev['seq']}'s"
                findings.append(Finding("checkpoint_order", msg, None, k))
        if problem is None:
            good.append(cp)
        prev, prev_good = cp, problem is None
    return good, findings, seen


def verify(
    entries: Sequence[StoredEntry | bytes | Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any] | str | bytes],
    public_keys: Mapping[str, Ed25519PublicKey],
) -> list[Finding]:
    """Recompute the tree over `entries` (in stored order) and check it against every checkpoint.

    Entries are named by seq. Entry findings come first, in seq order, then checkpoint findings. The tail
    after the latest checkpoint is protected only by the stored hashes and the chain (see docs).
    """
    rows = [_normalise(pos, item) for pos, item in enumerate(entries)]
    good, cp_findings, seen_cps = _check_checkpoints(checkpoints, public_keys)
    found: list[Finding] = []

    def flag(row: _Row, kind: str, message: str) -> None:
        row.flagged = True
        found.append(Finding(kind, message, row.seq))

    # Signed leaf hashes by leaf index, with the checkpoint that carries them.
    witness: dict[int, tuple[bytes, int]] = {}
    for cp in good:
        for offset, hexed in enumerate(cp["leaves"]):
            witness.setdefault(cp["leaves_from"] + offset, (bytes.fromhex(hexed), cp["seq"]))

    # Chain: does each stored chain hash extend the previous row's?
    chain_ok: list[bool] = []
    prev_chain: bytes | None = ZERO_HASH
    for row in rows:
        stored = row.stored
        ok = stored.chain_hash is None or prev_chain is None
        chain_ok.append(
            ok or chain_hash(prev_chain or ZERO_HASH, stored.leaf_hash or row.leaf) == stored.chain_hash
        )
        prev_chain = stored.chain_hash

    # Inserted: a second row claiming a seq. The genuine one matches the signed leaf, else its chain, else
    # it comes first.
    by_seq: dict[int, list[_Row]] = {}
    for row in rows:
        by_seq.setdefault(row.seq, []).append(row)
    forged: set[int] = set()
    for seq, group in by_seq.items():
        if len(group) > 1:
            signed = witness.get(seq - 1)
            genuine = next((r for r in group if signed is not None and r.leaf == signed[0]), None)
            genuine = genuine or next((r for r in group if chain_ok[r.pos] and r.entry is not None), group[0])
            for row in group:
                if row is not genuine:
                    forged.add(row.pos)
                    flag(row, "inserted", f"entry {seq}: inserted (duplicate seq)")
    kept = [row for row in rows if row.pos not in forged]

    # Modified: content vs the signed leaf for its seq, or vs the leaf hash stored beside it.
    for row in kept:
        signed = witness.get(row.seq - 1)
        if row.entry is None:
            flag(row, "modified", f"entry {row.seq}: modified (not a valid audit entry)")
        elif signed is not None and signed[0] != row.leaf:
            flag(row, "modified", f"entry {row.seq}: modified (does not match checkpoint {signed[1]})")
        elif row.stored.leaf_hash is not None and row.stored.leaf_hash != row.leaf:
            flag(row, "modified", f"entry {row.seq}: modified (does not match its recorded leaf hash)")

    # Reordered: a row not where its seq sorts; removed: a seq missing below the highest one.
    for row, expected in zip(kept, sorted(r.seq for r in kept), strict=True):
        if row.seq != expected:
            flag(row, "reordered", f"entry {row.seq}: reordered (found where entry {expected} belongs)")
    present = {row.seq for row in kept}
    top = max(present, default=0)
    for seq in range(1, top + 1):
        if seq not in present:
            found.append(Finding("removed", f"entry {seq}: removed", seq))
            nxt = min((r for r in kept if r.seq > seq), key=lambda r: r.seq)
            nxt.flagged = True

    # A broken chain is reported where nothing else explains it.
    for i, row in enumerate(rows):
        if not chain_ok[i] and not row.flagged and not (i and rows[i - 1].flagged):
            msg = f"entry {row.seq}: chain hash mismatch (the log was rewritten at or before this entry)"
            found.append(Finding("chain", msg, row.seq))

    found.sort(key=lambda f: f.seq or 0)

    # Checkpoint roots over the log as stored; truncation behind the largest checkpoint.
    frontier = Frontier()
    by_size: dict[int, list[dict[str, Any]]] = {}
    for cp in good:
        by_size.setdefault(cp["tree_size"], []).append(cp)
    roots: dict[int, bytes] = {0: EMPTY_ROOT} if 0 in by_size else {}
    for row in rows:
        frontier.append(row.leaf)
        if frontier.size in by_size:
            roots[frontier.size] = frontier.root()
    matched = 0
    for cp in sorted(good, key=lambda c: c["tree_size"]):
        size = cp["tree_size"]
        if size not in roots:
            continue
        if roots[size].hex() == cp["root_hash"]:
            matched = max(matched, size)
            continue
        k = cp["seq"]
        cp_findings.append(
            Finding(
                "checkpoint_root",
                f"checkpoint {k}: root hash does not match the first {size} entries",
                None,
                k,
            )
        )
        if not any(f.seq is not None and matched < f.seq <= size for f in found):
            msg = f"{_span(matched + 1, size)}: modified (checkpoint {k} root mismatch; entry not identified)"
            found.append(Finding("modified", msg, matched + 1))
    if good:
        last = max(good, key=lambda c: (c["tree_size"], c["seq"]))
        if top < last["tree_size"]:
            msg = (
                f"log truncated: {_span(top + 1, last['tree_size'])} missing behind checkpoint {last['seq']}"
            )
            found.append(Finding("truncated", msg, top + 1, last["seq"]))

    # Checkpoints the log itself recorded (the store appends an entry after each one) but the file lacks.
    reported = {f.checkpoint for f in cp_findings if f.kind == "checkpoint_missing"}
    for row in kept:
        entry = row.entry
        if (
            entry is None
            or entry.get("action") != ACTION_CHECKPOINT
            or not isinstance(entry.get("details"), dict)
        ):
            continue
        k = entry["details"].get("checkpoint")
        if type(k) is int and k not in seen_cps and k not in reported:
            reported.add(k)
            cp_findings.append(
                Finding(
                    "checkpoint_missing", f"checkpoint {k}: missing (recorded by entry {row.seq})", None, k
                )
            )
    return found + cp_findings

"""storage.audit's RFC 9162 Merkle tree, canonical JSON and checkpoints, against known answers.

Vectors: transparency-dev/merkle proof/verify_test.go (the certificate-transparency reference tests of
RFC 6962, whose hashing RFC 9162 keeps): eight leaves, the root of every prefix, inclusion and consistency
proofs. Leaf numbers there are 1-based; here indexes are 0-based.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from storage import audit
from storage.audit import (
    AuditError,
    Frontier,
    ProofError,
    canonical_json,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
INCLUSION = [  # (leaf index, tree size, path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip

HASHES = [leaf_hash(d) for d in LEAVES]


def reference_mth(data: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 written out literally, independent of storage.audit."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


def test_empty_root() -> None:
    assert root_hash([]).hex() == EMPTY_ROOT == Frontier().root().hex()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_rfc6962_vectors(size: int) -> None:
    assert root_hash(HASHES[:size]).hex() == ROOTS[size - 1]
    assert reference_mth(LEAVES[:size]).hex() == ROOTS[size - 1]
    frontier = Frontier()
    for h in HASHES[:size]:
        frontier.append(h)
    assert frontier.root().hex() == ROOTS[size - 1]


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_matches_reference_implementation(data: list[bytes]) -> None:
    frontier = Frontier()
    for d in data:
        frontier.append(leaf_hash(d))
    assert root_hash([leaf_hash(d) for d in data]) == frontier.root() == reference_mth(data)


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, path: list[str]) -> None:
    assert [p.hex() for p in inclusion_proof(HASHES[:size], index)] == path
    proof = [bytes.fromhex(p) for p in path]
    root = bytes.fromhex(ROOTS[size - 1])
    assert root_from_inclusion_proof(index, size, HASHES[index], proof) == root
    assert verify_inclusion(index, size, HASHES[index], proof, root)
    # The reference verifier's corruptions, each refused.
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    assert not verify_inclusion(index + 1, size, HASHES[index], proof, root)
    assert not verify_inclusion(index, size * 2, HASHES[index], proof, root)
    assert not verify_inclusion(index, size, leaf_hash(b"WrongLeaf"), proof, root)
    assert not verify_inclusion(index, size, HASHES[index], proof, some)
    assert not verify_inclusion(index, size, HASHES[index], [*proof, root], root)
    assert not verify_inclusion(index, size, HASHES[index], [root, *proof], root)
    assert not verify_inclusion(index, size, HASHES[index], [*proof, b""], root)
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        assert not verify_inclusion(index, size, HASHES[index], flipped, root)
    if proof:
        assert not verify_inclusion(index, size, HASHES[index], proof[:-1], root)


@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_round_trip(size_index: tuple[int, int]) -> None:
    size, index = size_index
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(index, size, leaves[index], proof, root_hash(leaves))


def test_inclusion_bounds() -> None:
    with pytest.raises(ProofError, match=r"^leaf index 8 is outside a tree of size 8$"):
        inclusion_proof(HASHES, 8)
    assert not verify_inclusion(0, 0, HASHES[0], [], bytes.fromhex(EMPTY_ROOT))
    assert not verify_inclusion(2, 1, HASHES[0], [], HASHES[0])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, path: list[str]) -> None:
    assert [p.hex() for p in consistency_proof(HASHES[:new], old)] == path
    proof = [bytes.fromhex(p) for p in path]
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert verify_consistency(old, new, proof, old_root, new_root)
    if proof:
        assert not verify_consistency(old, new, proof, new_root, old_root)
        assert not verify_consistency(old, new, proof[:-1], old_root, new_root)
        assert not verify_consistency(old - 1, new, proof, old_root, new_root)
        assert not verify_consistency(old, new, [], old_root, new_root)


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_consistency_round_trip(sizes: tuple[int, int]) -> None:
    old, new = sizes
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(new)]
    proof = consistency_proof(leaves, old)
    assert verify_consistency(old, new, proof, root_hash(leaves[:old]), root_hash(leaves))


def test_consistency_trivial_cases() -> None:
    r1, r2 = b"don't care 1", b"don't care 2"
    assert verify_consistency(0, 0, [], r1, r1)
    assert verify_consistency(0, 1, [], r1, r2)
    assert not verify_consistency(1, 1, [], r1, r2)
    assert not verify_consistency(2, 1, [], r1, r2)
    assert not verify_consistency(1, 2, [], r1, r2)
    assert not verify_consistency(1, 1, [bytes.fromhex(EMPTY_ROOT)], r1, r1)


def test_canonical_json() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "日本"}}
    assert canonical_json(value) == '{"a":{"y":"日本","z":"é"},"b":[1,2.5,null,true]}'.encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": float("nan")}, "entry holds NaN or Infinity"),
        ({"x": float("inf")}, "entry holds NaN or Infinity"),
        ({1: "a"}, "entry object key of type int is not a string"),
        ({"x": b"raw"}, "entry value of type bytes is not JSON"),
        ({"x": "\ud800"}, "entry string is not valid UTF-8"),
    ],
)
def test_canonical_json_refuses(value: object, message: str) -> None:
    with pytest.raises(AuditError) as err:
        canonical_json(value)
    assert str(err.value) == message


def test_format_ts() -> None:
    when = datetime(2026, 11, 27, 17, 32, 56, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert audit.format_ts(when) == "2026-11-27T16:32:56.123Z"
    with pytest.raises(AuditError, match=r"^timestamp must be timezone-aware$"):
        audit.format_ts(datetime(2026, 1, 1))  # the naive datetime is the point


def test_make_entry_scrubs_and_validates() -> None:
    entry = audit.make_entry(
        seq=1,
        ts="2026-01-01T00:00:00.000Z",
        actor=audit.Actor("u1", "a@example.org", "127.0.0.1", "admin", "org1"),
        action="settings.update",
        resource="org:org1",
        outcome="ok",
        before={"phi_protection": True, "note": "call 555-0100"},
        after={"phi_protection": False},
        details=["555-0100"],
        scrub=lambda s: s.replace("555-0100", "[PHONE]"),
    )
    assert entry["before"] == {"phi_protection": True, "note": "call [PHONE]"}
    assert entry["details"] == ["[PHONE]"]
    assert entry["actor"] == {"user_id": "u1", "email": "a@example.org", "ip": "127.0.0.1", "role": "admin",
                              "org_id": "org1"}  # fmt: skip
    with pytest.raises(AuditError, match=r"^outcome must be one of \['allowed', 'denied', 'error', 'ok'\]$"):
        audit.make_entry(seq=1, ts="", actor=audit.SYSTEM_ACTOR, action="a", resource="r", outcome="maybe")


def test_checkpoint_signature_and_chain() -> None:
    key = Ed25519PrivateKey.generate()
    keys = {audit.key_id(key.public_key()): key.public_key()}
    now = "2026-01-01T00:00:00.000Z"
    entries = [canonical_json({"seq": n}) for n in (1, 2, 3)]
    hashes = [leaf_hash(e) for e in entries]
    cp1 = audit.make_checkpoint(key=key, tree_size=2, root=root_hash(hashes[:2]), time=now, previous=None,
                                leaves=hashes[:2])  # fmt: skip
    cp2 = audit.make_checkpoint(key=key, tree_size=3, root=root_hash(hashes), time=now, previous=cp1,
                                leaves=hashes[2:3])  # fmt: skip
    assert (cp1["seq"], cp2["seq"], cp1["prev_hash"]) == (1, 2, "00" * 32)
    assert cp2["prev_hash"] == audit.checkpoint_hash(cp1)
    assert audit.check_signature(cp2, keys) is None
    assert audit.check_signature({**cp2, "tree_size": 4}, keys) == "bad signature"
    assert audit.check_signature(cp2, {}) == f"signed by unknown key {cp2['key_id']}"
    assert audit.verify(entries, [cp1, cp2], keys) == []
    assert [str(f) for f in audit.verify(entries, [cp2], keys)] == [
        "checkpoint 1: missing (the file starts at checkpoint 2)"
    ]


def test_verify_plain_entries_by_seq() -> None:
    entries = [{"seq": n, "action": "x"} for n in (1, 2, 4, 3, 3, 6)]
    assert [str(f) for f in audit.verify(entries, [], {})] == [
        "entry 3: inserted (duplicate seq)",
        "entry 3: reordered (found where entry 4 belongs)",
        "entry 4: reordered (found where entry 3 belongs)",
        "entry 5: removed",
    ]


def test_verify_names_modified_entry_from_checkpoint_leaves() -> None:
    """An attacker who rewrote data and every stored hash is still named, via the signed leaf hashes."""
    key = Ed25519PrivateKey.generate()
    keys = {audit.key_id(key.public_key()): key.public_key()}
    entries = [canonical_json({"seq": n, "action": "x"}) for n in range(1, 6)]
    leaves = [leaf_hash(e) for e in entries]
    cp = audit.make_checkpoint(
        key=key, tree_size=5, root=root_hash(leaves), time="t", previous=None, leaves=leaves
    )
    entries[2] = canonical_json({"seq": 3, "action": "y"})
    assert [str(f) for f in audit.verify(entries, [cp], keys)] == [
        "entry 3: modified (does not match checkpoint 1)",
        "checkpoint 1: root hash does not match the first 5 entries",
    ]
    tampered_cp = {**cp, "leaves": []}
    assert [str(f) for f in audit.verify(entries, [tampered_cp], keys)] == ["checkpoint 1: bad signature"]
    # A checkpoint without leaf hashes (e.g. from another writer) narrows the change to a range.
    bare = {k: v for k, v in cp.items() if k != "signature"} | {"leaves": [], "leaves_from": 5}
    bare["signature"] = base64.b64encode(key.sign(canonical_json(bare))).decode()
    assert [str(f) for f in audit.verify(entries, [bare], keys)] == [
        "entries 1..5: modified (checkpoint 1 root mismatch; entry not identified)",
        "checkpoint 1: root hash does not match the first 5 entries",
    ]

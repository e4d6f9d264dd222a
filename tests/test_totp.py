"""worker.auth.totp: RFC 6238 Appendix B vectors, ±1 step window, reuse refusal, lockout, secrets sealed."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pyotp
import pytest

from storage.keys import LocalKeyFile
from worker.auth.totp import (
    InvalidCodeError,
    LockedOutError,
    NotEnrolledError,
    ReusedCodeError,
    TotpError,
    TotpStore,
    code_at,
)

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [  # RFC 6238 Appendix B: (time, sha1, sha256, sha512), 8 digits
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
SHA1_SECRET = base64.b32encode(SEEDS["sha1"]).decode()


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        secret = base64.b32encode(SEEDS[digest]).decode()
        assert code_at(secret, at, digits=8, digest=digest) == expected
    assert pyotp.TOTP(SHA1_SECRET, digits=8).at(at) == sha1


@pytest.mark.parametrize(("at", "sha1"), [(v[0], v[1]) for v in VECTORS])
def test_store_accepts_the_vectors(tmp_path: Path, at: int, sha1: str) -> None:
    store = TotpStore(tmp_path / "users.json", digits=8)
    store.enroll("u1", "u1@example.org", secret=SHA1_SECRET)
    assert store.verify("u1", sha1, now=at) == at // 30


def test_enroll_gives_uri_and_file_is_private(tmp_path: Path) -> None:
    store = TotpStore(tmp_path / "users.json")
    enrollment = store.enroll("u1", "u1@example.org")
    assert (
        enrollment.uri
        == f"otpauth://totp/Converse:u1%40example.org?secret={enrollment.secret}&issuer=Converse"
    )
    assert len(base64.b32decode(enrollment.secret)) == 20
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    assert store.is_enrolled("u1") and not store.is_enrolled("u2")
    assert store.email("u1") == "u1@example.org"
    with pytest.raises(TotpError, match=r"^user u1 is already enrolled for TOTP$"):
        store.enroll("u1", "u1@example.org")


def test_window_and_reuse(tmp_path: Path) -> None:
    store = TotpStore(tmp_path / "users.json")
    secret = store.enroll("u1", "u1@example.org").secret
    now = 1_800_000_015.0
    step = int(now // 30)
    assert store.verify("u1", code_at(secret, now - 30), now) == step - 1  # previous step accepted
    with pytest.raises(ReusedCodeError, match=r"^TOTP code already used for user u1$"):
        store.verify("u1", code_at(secret, now - 30), now)
    assert store.verify("u1", code_at(secret, now), now) == step
    # Reuse is refused by a fresh store (another process, a restart): the last step is durable.
    again = TotpStore(tmp_path / "users.json")
    with pytest.raises(ReusedCodeError):
        again.verify("u1", code_at(secret, now), now + 20)
    with pytest.raises(InvalidCodeError, match=r"^invalid TOTP code for user u1$"):
        again.verify("u1", code_at(secret, now - 90), now)  # outside the window
    assert again.verify("u1", code_at(secret, now + 30), now) == step + 1  # next step accepted


def test_unknown_user(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolledError, match=r"^user nobody is not enrolled for TOTP$"):
        TotpStore(tmp_path / "users.json").verify("nobody", "123456", 0.0)


def test_lockout_after_failures(tmp_path: Path) -> None:
    store = TotpStore(tmp_path / "users.json", max_failures=3, lockout_s=300)
    secret = store.enroll("u1", "u1@example.org").secret
    now = 1_800_000_000.0
    good = code_at(secret, now)
    bad = "000000" if good != "000000" else "111111"
    for _ in range(3):
        with pytest.raises(InvalidCodeError):
            store.verify("u1", bad, now)
    with pytest.raises(LockedOutError, match=r"^too many failed TOTP codes for user u1; try again later$"):
        store.verify("u1", good, now + 1)
    assert store.verify("u1", code_at(secret, now + 301), now + 301) == int((now + 301) // 30)


def test_secret_wrapped_by_kek(tmp_path: Path) -> None:
    kek = LocalKeyFile(tmp_path / "keys" / "kek.json")
    store = TotpStore(tmp_path / "users.json", key_provider=kek)
    secret = store.enroll("u1", "u1@example.org").secret
    raw = (tmp_path / "users.json").read_text()
    assert secret not in raw
    assert json.loads(raw)["users"]["u1"]["secret"] is None
    assert store.verify("u1", code_at(secret, 1_800_000_000), 1_800_000_000) == 60_000_000
    with pytest.raises(TotpError, match=r"^TOTP secret of user u1 is wrapped, and no key-encryption key"):
        TotpStore(tmp_path / "users.json").verify("u1", "123456", 1_800_000_100)


def test_group_readable_file_refused(tmp_path: Path) -> None:
    store = TotpStore(tmp_path / "users.json")
    store.enroll("u1", "u1@example.org")
    (tmp_path / "users.json").chmod(0o644)
    with pytest.raises(TotpError, match=r"is readable by group or others; chmod 600 it$"):
        store.is_enrolled("u1")

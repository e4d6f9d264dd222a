"""TOTP (RFC 6238) enrolment and verification for the embedded issuer, with durable replay refusal.

Users live in a small JSON file (0600, replaced atomically under an flock). A secret is stored wrapped by the
key-encryption key when a `KeyProvider` is given (the worker passes its KEK), else base32 in the 0600 file.
Each user's last accepted time step is stored before `verify` returns, so a code is never accepted twice
(RFC 6238 section 5.2), across processes and restarts. Five failures in a row lock the user out for
five minutes. Blocking file I/O: call from a thread (`asyncio.to_thread`) on an event loop.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyotp

from storage.keys import KindReport
from storage.protocols import KeyProvider, WrappedKey

_VERSION: Final = 1


class TotpError(Exception):
    """Base of TOTP failures; messages carry user ids, never secrets or codes."""


class NotEnrolledError(TotpError):
    pass


class InvalidCodeError(TotpError):
    pass


class ReusedCodeError(TotpError):
    pass


class LockedOutError(TotpError):
    pass


@dataclass(frozen=True, slots=True)
class Account:
    """What an enrolment grants: tokens of `token issue` carry this organisation and role. Enrolments made
    before organisations were recorded have `org_id`/`role` None."""

    user_id: str
    email: str
    org_id: str | None
    role: str | None


@dataclass(frozen=True, slots=True)
class Enrollment:
    user_id: str
    secret: str  # base32; shown once, to put in an authenticator app
    uri: str  # otpauth://totp/...


def code_at(secret: str, for_time: float, *, digits: int = 6, digest: str = "sha1", period: int = 30) -> str:
    """The TOTP code of `secret` (base32) at Unix time `for_time`."""
    return str(
        pyotp.TOTP(secret, digits=digits, digest=getattr(hashlib, digest), interval=period).at(for_time)
    )


def _context(user_id: str) -> bytes:
    return b"converse-totp-secret\x00" + user_id.encode("utf-8")


class TotpStore:
    def __init__(
        self,
        path: Path,
        *,
        key_provider: KeyProvider | None = None,
        issuer_name: str = "Converse",
        digits: int = 6,
        period: int = 30,
        max_failures: int = 5,
        lockout_s: float = 300.0,
    ) -> None:
        self.path = Path(path)
        self._kp, self._issuer_name = key_provider, issuer_name
        self._digits, self._period = digits, period
        self._max_failures, self._lockout_s = max_failures, lockout_s

    # -- public API ------------------------------------------------------------------------------------------

    def enroll(
        self,
        user_id: str,
        email: str,
        *,
        replace: bool = False,
        secret: str | None = None,
        org_id: str | None = None,
        role: str | None = None,
    ) -> Enrollment:
        """Create a secret for `user_id` (of `org_id`, with `role`). Re-enrolling needs `replace=True` (and
        resets the replay state); a user of another organisation is never replaced."""
        secret = secret or pyotp.random_base32()
        with self._locked() as users:
            old = users.get(user_id)
            if old is not None and (not replace or old.get("org_id", org_id) != org_id):
                raise TotpError(f"user {user_id} is already enrolled for TOTP")
            users[user_id] = {
                "email": email,
                "org_id": org_id,
                "role": role,
                **self._seal(user_id, secret),
                "last_step": -1,
                "failures": 0,
                "locked_until": 0.0,
            }
        totp = pyotp.TOTP(secret, digits=self._digits, interval=self._period)
        return Enrollment(user_id, secret, totp.provisioning_uri(name=email, issuer_name=self._issuer_name))

    def is_enrolled(self, user_id: str) -> bool:
        with self._locked() as users:
            return user_id in users

    def email(self, user_id: str) -> str | None:
        with self._locked() as users:
            user = users.get(user_id)
            return None if user is None else str(user["email"])

    def account(self, user_id: str) -> Account | None:
        with self._locked() as users:
            user = users.get(user_id)
        if user is None:
            return None
        org, role = user.get("org_id"), user.get("role")
        return Account(
            user_id,
            str(user["email"]),
            None if org is None else str(org),
            None if role is None else str(role),
        )

    def remove(self, user_id: str) -> None:
        with self._locked() as users:
            users.pop(user_id, None)

    def verify(self, user_id: str, code: str, now: float) -> int:
        """Accept `code` at Unix time `now` within one step either side, once. Returns the accepted step."""
        with self._locked() as users:
            user = users.get(user_id)
            if user is None:
                raise NotEnrolledError(f"user {user_id} is not enrolled for TOTP")
            if now < float(user["locked_until"]):
                raise LockedOutError(f"too many failed TOTP codes for user {user_id}; try again later")
            totp = pyotp.TOTP(self._unseal(user_id, user), digits=self._digits, interval=self._period)
            current = int(now // self._period)
            code = code.strip()
            matched = [
                step
                for step in (current - 1, current, current + 1)
                if step >= 0 and hmac.compare_digest(totp.generate_otp(step), code)
            ]
            fresh = [step for step in matched if step > int(user["last_step"])]
            if fresh:
                user["last_step"], user["failures"] = fresh[0], 0
                return fresh[0]
            user["failures"] = int(user["failures"]) + 1
            if user["failures"] >= self._max_failures:
                user["failures"], user["locked_until"] = 0, now + self._lockout_s
            if matched:
                raise ReusedCodeError(f"TOTP code already used for user {user_id}")
            raise InvalidCodeError(f"invalid TOTP code for user {user_id}")

    def rewrap(self) -> KindReport:
        """Re-wrap every wrapped TOTP secret under the key provider's current KEK version (after a rotation),
        in one atomic rewrite of the users file. Secrets stored plain (no KEK) are left as they are."""
        report = KindReport()
        if self._kp is None:
            return report
        current = self._kp.current()
        with self._locked() as users:
            for user_id, user in users.items():
                w = user.get("wrapped")
                if w is None:
                    continue
                if (str(w["kek_id"]), int(w["kek_version"])) == current:
                    report += KindReport(unchanged=1)
                    continue
                user.update(self._seal(user_id, self._unseal(user_id, user)))
                report += KindReport(rewrapped=1)
        return report

    def key_versions(self) -> dict[int, int]:
        """How many wrapped TOTP secrets are under each KEK version."""
        with self._locked() as users:
            versions = Counter(int(u["wrapped"]["kek_version"]) for u in users.values() if u.get("wrapped"))
        return dict(sorted(versions.items()))

    # -- storage ---------------------------------------------------------------------------------------------

    def _seal(self, user_id: str, secret: str) -> dict[str, Any]:
        if self._kp is None:
            return {"secret": secret, "wrapped": None}
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
        w = self._kp.wrap(raw, _context(user_id))
        blob = base64.b64encode(w.blob).decode("ascii")
        return {"secret": None, "wrapped": {"kek_id": w.kek_id, "kek_version": w.kek_version, "blob": blob}}

    def _unseal(self, user_id: str, user: dict[str, Any]) -> str:
        if user.get("wrapped") is None:
            return str(user["secret"])
        if self._kp is None:
            raise TotpError(
                f"TOTP secret of user {user_id} is wrapped, and no key-encryption key is configured"
            )
        w = user["wrapped"]
        wrapped = WrappedKey(str(w["kek_id"]), int(w["kek_version"]), base64.b64decode(w["blob"]))
        return base64.b32encode(self._kp.unwrap(wrapped, _context(user_id))).decode("ascii").rstrip("=")

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The users mapping under an exclusive lock; written back (atomically, durably) if it changed."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            users = self._read()
            before = json.dumps(users, sort_keys=True)
            try:
                yield users
            finally:  # failures (and lockouts) are state too: persist them even when verify raises
                if json.dumps(users, sort_keys=True) != before:
                    self._write(users)
        finally:
            os.close(lock_fd)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o077:
                raise TotpError(f"users file {self.path} is readable by group or others; chmod 600 it")
            try:
                doc = json.loads(f.read())
                users = doc["users"]
                if doc.get("version") != _VERSION or not isinstance(users, dict):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise TotpError(f"users file {self.path} is malformed") from None
        return users

    def _write(self, users: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps({"version": _VERSION, "users": users}, sort_keys=True, indent=1).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

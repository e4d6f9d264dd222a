"""Wiring of identity, TOTP and the audit log for a data directory (shared by the CLI and `serve`).

Key files live beside the KEK file, outside the data directory: `issuer.key` (Ed25519, signs JWTs of the
embedded issuer) and `audit-signing.key` (Ed25519, signs audit checkpoints). TOTP enrolments live in
`<data-dir>/users.json`, their secrets wrapped by the KEK.

The audit log follows the storage backend: with a database URL (argument, else `CONVERSE_DATABASE_URL`) it is
the scale-out `storage.audit_pg.PgAuditLog` (one chain in PostgreSQL shared by every pod, checkpoints as
Object-Locked objects in the object store, else in `<data-dir>/audit-checkpoints.jsonl`); otherwise the
embedded SQLite `AuditLog` in the data directory. Pods must share `audit-signing.key` (it sits beside the
KEK file, which they share anyway) so that their checkpoints form one signed sequence.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storage.audit import Actor
from storage.audit_store import AuditLog
from storage.factory import missing_extra
from storage.keys import LocalKeyFile
from worker.auth.access import Principal, Role
from worker.auth.identity import Authenticator, LocalIssuer, OidcVerifier, StaticTokenVerifier, TokenVerifier
from worker.auth.totp import TotpStore

if TYPE_CHECKING:  # the scale-out log needs the `scale` extra: imported only when a database is configured
    from storage.audit_pg import PgAuditLog

LOCAL_ISSUER = "converse-local"
AUDIENCE = "converse-worker"


def _scrub(text: str) -> str:
    import redact

    return redact.redact_text(text)


@dataclass(slots=True)
class Security:
    audit: AuditLog | PgAuditLog
    issuer: LocalIssuer
    totp: TotpStore
    authenticator: Authenticator

    async def open(self) -> None:
        """Connect the scale-out audit log (the embedded one opens on first use); closes it on failure."""
        if isinstance(self.audit, AuditLog):
            return
        try:
            await self.audit.open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.audit.close()


def open_security(
    data_dir: Path,
    kek_file: Path,
    *,
    api_token: str | None = None,
    org_id: str = "default",
    keys: LocalKeyFile | None = None,
    database_url: str | None = None,
    object_store_url: str | None = None,
) -> Security:
    key_dir = kek_file.parent
    audit_key = key_dir / "audit-signing.key"
    database_url = database_url or os.environ.get("CONVERSE_DATABASE_URL") or None
    audit: AuditLog | PgAuditLog
    if database_url:
        try:
            from storage.audit_pg import PgAuditLog
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, "CONVERSE_DATABASE_URL") from None
        object_store_url = object_store_url or os.environ.get("CONVERSE_OBJECT_STORE_URL") or None
        audit = PgAuditLog.for_urls(
            database_url, object_store_url, data_dir=data_dir, key_path=audit_key, scrub=_scrub
        )
    else:
        audit = AuditLog.in_data_dir(data_dir, key_path=audit_key, scrub=_scrub)
    issuer = LocalIssuer(key_dir / "issuer.key", issuer=LOCAL_ISSUER, audience=AUDIENCE)
    totp = TotpStore(data_dir / "users.json", key_provider=keys or LocalKeyFile(kek_file))
    issuers: dict[str, TokenVerifier] = {LOCAL_ISSUER: issuer}
    oidc_issuer = os.environ.get("CONVERSE_OIDC_ISSUER")
    if oidc_issuer:
        issuers[oidc_issuer] = OidcVerifier(
            oidc_issuer,
            os.environ.get("CONVERSE_OIDC_AUDIENCE", AUDIENCE),
            os.environ.get("CONVERSE_OIDC_JWKS", ""),
        )
    static = StaticTokenVerifier(api_token, org_id=org_id) if api_token else None
    return Security(audit, issuer, totp, Authenticator(static=static, issuers=issuers))


def actor_of(p: Principal) -> Actor:
    return Actor(user_id=p.user_id, email=p.email, ip=p.ip, role=str(p.role), org_id=p.org_id)


def local_operator(org_id: str) -> Principal:
    """Whoever runs the CLI on the pod without a token: the custodian of the data directory and KEK file.

    They can read everything anyway (they hold the key), so the CLI lets them act, and audits each action as
    `local:<os user>` with amr ["local"]. With a token (`--token` / CONVERSE_TOKEN), the token's role and MFA
    decide, exactly as over HTTP.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Principal(user_id=f"local:{user}", email=None, org_id=org_id, role=Role.OWNER, amr=("local",))

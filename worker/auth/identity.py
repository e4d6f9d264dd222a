"""Who is calling: bearer JWTs (EdDSA) from the embedded issuer or an OIDC provider, or the static token.

- `LocalIssuer`: the embedded default. Its Ed25519 key is created 0600 on first use. Tokens are short-lived
  (15 minutes by default, at most an hour). `issue_for_user` puts "mfa" in `amr` only after a TOTP code.
- `OidcVerifier`: production. Issuer, audience and the provider's public keys (JWKS file, or an https URL
  fetched once at startup); asymmetric algorithms only, and the key's own `alg` wins.
- `StaticTokenVerifier`: `CONVERSE_API_TOKEN`, a service principal with role owner and amr ["static"]: it may
  configure and operate the worker but, lacking "mfa", never reads PHI (transcripts, recordings, live view).

Errors are one line and never contain the token.
"""

from __future__ import annotations

import hmac
import json
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.audit import key_id
from storage.audit_store import load_or_create_ed25519_key
from worker.auth.access import Principal, Role
from worker.auth.totp import TotpStore

MAX_TTL_S: Final = 3600
OIDC_MAX_TTL_S: Final = 86400  # an external provider's tokens: at most a day from iat to exp
STATIC_USER: Final = "static-token"
_ASYMMETRIC: Final = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384"}
)
_REQUIRED: Final = ["exp", "iat", "nbf", "iss", "aud", "sub"]


class IdentityError(Exception):
    """Authentication failed or a token cannot be issued. One line, never the token."""


class TokenVerifier(Protocol):
    def verify(self, token: str, ip: str | None = None) -> Principal: ...


# PyJWT's errors as one line each, most specific first (the first match wins, as in an except chain).
_JWT_REASONS: Final = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience mismatch"),
    (jwt.InvalidIssuerError, "token issuer mismatch"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidSignatureError, "token signature invalid"),
)


def _decode(
    token: str, key: Any, algorithms: list[str], issuer: str, audience: str, leeway: float
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": _REQUIRED},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise IdentityError(f"token lacks claim {exc.claim}") from None
    except jwt.InvalidTokenError as exc:
        reason = next((r for kind, r in _JWT_REASONS if isinstance(exc, kind)), "token malformed")
        raise IdentityError(reason) from None
    except (jwt.InvalidKeyError, ValueError, TypeError):
        raise IdentityError("token malformed") from None
    return claims


def _principal(claims: Mapping[str, Any], ip: str | None, role_claim: str, org_claim: str) -> Principal:
    sub, email, org, role, amr = (claims.get(k) for k in ("sub", "email", org_claim, role_claim, "amr"))
    if not isinstance(sub, str) or not sub:
        raise IdentityError("token lacks claim sub")
    if not isinstance(org, str) or not org:
        raise IdentityError(f"token lacks claim {org_claim}")
    if email is not None and not isinstance(email, str):
        raise IdentityError("token claim email is not a string")
    if role is None:
        raise IdentityError(f"token lacks claim {role_claim}")
    if amr is None:
        amr = []
    if not isinstance(amr, list) or not all(isinstance(a, str) for a in amr):
        raise IdentityError("token claim amr is not a list of strings")
    try:
        parsed_role = Role(str(role))
    except ValueError:
        raise IdentityError("token has an unknown role") from None
    return Principal(user_id=sub, email=email, org_id=org, role=parsed_role, amr=tuple(amr), ip=ip)


class LocalIssuer:
    """The embedded issuer: signs and verifies EdDSA (Ed25519) tokens with its own key."""

    def __init__(
        self,
        key_path: Path,
        issuer: str = "converse-local",
        audience: str = "converse-worker",
        *,
        clock: Callable[[], float] = time.time,
        leeway_s: float = 30.0,
    ) -> None:
        self.key_path, self.issuer, self.audience = Path(key_path), issuer, audience
        self._clock, self._leeway = clock, leeway_s
        self._key: Ed25519PrivateKey | None = None

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_or_create_ed25519_key(self.key_path)
        return self._key

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set, for verifiers elsewhere (e.g. an `OidcVerifier` given this file)."""
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.key_id, "alg": "EdDSA", "use": "sig"}]}

    def issue(
        self,
        user_id: str,
        email: str | None,
        org_id: str,
        role: Role | str,
        amr: Sequence[str],
        ttl_s: int = 900,
    ) -> str:
        if not 0 < ttl_s <= MAX_TTL_S:
            raise IdentityError(f"token lifetime must be 1 to {MAX_TTL_S} seconds")
        if not user_id or not org_id:
            raise IdentityError("a token needs a user id and an organisation")
        try:
            parsed_role = Role(role)
        except ValueError:
            raise IdentityError(f"unknown role {role!s}; one of {', '.join(Role)}") from None
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "email": email,
            "org_id": org_id,
            "role": str(parsed_role),
            "amr": list(amr),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.key_id})

    def verify(self, token: str, ip: str | None = None) -> Principal:
        claims = _decode(token, self.key.public_key(), ["EdDSA"], self.issuer, self.audience, self._leeway)
        # Our own tokens live at most MAX_TTL_S: one signed with a longer life (a leaked key, a bug, a
        # hand-made token) is refused. An iat in the future is refused by PyJWT ("not yet valid").
        _check_lifetime(claims, MAX_TTL_S)
        return _principal(claims, ip, "role", "org_id")


def _check_lifetime(claims: dict[str, Any], limit_s: int) -> None:
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise IdentityError("token malformed")
    if exp - iat > limit_s:
        raise IdentityError(f"token lifetime exceeds {limit_s} seconds")


def _load_jwks(source: str | Path, timeout_s: float) -> dict[str | None, tuple[jwt.PyJWK, str | None]]:
    """kid -> (key, the `alg` the JWK declares, if any)."""
    if isinstance(source, str) and source.startswith(("https://", "http://")):
        if not source.startswith("https://"):
            raise IdentityError("a JWKS URL must use https")
        with urllib.request.urlopen(source, timeout=timeout_s) as resp:  # noqa: S310  # https only, checked above
            raw = resp.read()
    else:
        raw = Path(source).read_bytes()
    try:
        data = json.loads(raw)
        keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        for entry in data["keys"]:
            if entry.get("kty") == "oct":
                continue  # a shared secret would let anyone holding it mint tokens: never trusted
            try:
                jwk = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type this build cannot use
            declared = entry.get("alg")
            keys[jwk.key_id] = (jwk, declared if isinstance(declared, str) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IdentityError("JWKS is malformed") from None
    if not keys:
        raise IdentityError("JWKS holds no usable public key")
    return keys


class OidcVerifier:
    """Verifies tokens of an external OIDC provider: issuer, audience, keys from its JWKS."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks: str | Path,
        *,
        algorithms: Sequence[str] = ("EdDSA", "ES256", "RS256"),
        role_claim: str = "role",
        org_claim: str = "org_id",
        leeway_s: float = 30.0,
        fetch_timeout_s: float = 10.0,
    ) -> None:
        bad = set(algorithms) - _ASYMMETRIC
        if bad:
            raise IdentityError(f"algorithms not allowed for OIDC tokens: {', '.join(sorted(bad))}")
        self.issuer, self.audience = issuer, audience
        self._algorithms = list(algorithms)
        self._role_claim, self._org_claim, self._leeway = role_claim, org_claim, leeway_s
        self._keys = _load_jwks(jwks, fetch_timeout_s)

    def verify(self, token: str, ip: str | None = None) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise IdentityError("token malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise IdentityError("token algorithm not allowed")
        if kid is None and len(self._keys) == 1:
            jwk, declared = next(iter(self._keys.values()))
        elif kid in self._keys:
            jwk, declared = self._keys[kid]
        else:
            raise IdentityError("token key id unknown")
        if declared is not None and declared != alg:
            raise IdentityError("token algorithm not allowed")
        claims = _decode(token, jwk.key, [alg], self.issuer, self.audience, self._leeway)
        # A provider's access tokens live minutes to hours; one that lives longer than a day (a
        # mis-configured client, a token minted to outlive revocation) is refused, as ours past an hour.
        _check_lifetime(claims, OIDC_MAX_TTL_S)
        return _principal(claims, ip, self._role_claim, self._org_claim)


class StaticTokenVerifier:
    """`CONVERSE_API_TOKEN`: a service principal (owner, amr ["static"], no mfa: never reads PHI)."""

    MIN_LENGTH: Final = 16

    def __init__(self, token: str, *, org_id: str = "default") -> None:
        if len(token) < self.MIN_LENGTH:
            raise IdentityError(f"CONVERSE_API_TOKEN must be at least {self.MIN_LENGTH} characters")
        self._token, self._org_id = token.encode("utf-8"), org_id

    def verify(self, token: str, ip: str | None = None) -> Principal:
        if not hmac.compare_digest(token.encode("utf-8"), self._token):
            raise IdentityError("token invalid")
        return Principal(STATIC_USER, None, self._org_id, Role.OWNER, ("static",), ip)


class Authenticator:
    """An `Authorization` header to a Principal: JWTs by their issuer, anything else to the static token."""

    def __init__(
        self, *, static: StaticTokenVerifier | None = None, issuers: Mapping[str, TokenVerifier]
    ) -> None:
        self._static, self._issuers = static, dict(issuers)

    def authenticate(self, authorization: str | None, ip: str | None = None) -> Principal:
        if not authorization:
            raise IdentityError("missing bearer token")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise IdentityError("authorization must be a bearer token")
        if token.count(".") == 2 and self._issuers:
            try:
                iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
            except jwt.InvalidTokenError:
                raise IdentityError("token malformed") from None
            verifier = self._issuers.get(iss) if isinstance(iss, str) else None
            if verifier is None:
                raise IdentityError("token issuer not trusted")
            return verifier.verify(token, ip)
        if self._static is not None:
            return self._static.verify(token, ip)
        raise IdentityError("token invalid")


def issue_for_user(
    issuer: LocalIssuer,
    totp: TotpStore,
    *,
    user_id: str,
    email: str | None,
    org_id: str,
    role: Role | str,
    code: str | None,
    now: float,
    ttl_s: int = 900,
) -> str:
    """`token issue`: a TOTP-enrolled user must give a fresh code and gets amr ["otp", "mfa"]; a user who is
    not enrolled gets amr ["local"] (no PHI reads). Raises IdentityError or a `worker.auth.totp.TotpError`."""
    if totp.is_enrolled(user_id):
        if code is None:
            raise IdentityError(f"user {user_id} is enrolled for TOTP: a code is required")
        if email is not None and email != totp.email(user_id):
            raise IdentityError(f"email does not match the TOTP enrolment of user {user_id}")
        totp.verify(user_id, code, now)
        amr: tuple[str, ...] = ("otp", "mfa")
    elif code is not None:
        raise IdentityError(f"user {user_id} is not enrolled for TOTP")
    else:
        amr = ("local",)
    return issuer.issue(user_id, email, org_id, role, amr, ttl_s)

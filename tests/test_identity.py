"""worker.auth.identity: local EdDSA tokens, OIDC verification from a JWKS file, the static token, attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from storage.audit import AuditError
from worker.auth.access import Principal, Role, check
from worker.auth.identity import (
    MAX_TTL_S,
    Authenticator,
    IdentityError,
    LocalIssuer,
    OidcVerifier,
    StaticTokenVerifier,
    issue_for_user,
)
from worker.auth.totp import ReusedCodeError, TotpStore, code_at

STATIC = "s3cret-static-token-0123456789"


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "keys" / "token-signing.key")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, object], claims: dict[str, object], sign: bytes | None) -> str:
    """A token built by hand, HMAC-signed with `sign` (or unsigned)."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = b"" if sign is None else hmac.new(sign, head.encode(), hashlib.sha256).digest()
    return head + "." + b64url(sig)


def test_issue_and_verify(issuer: LocalIssuer, tmp_path: Path) -> None:
    token = issuer.issue("u1", "u1@example.org", "org1", "admin", ["otp", "mfa"])
    assert issuer.verify(token, ip="10.0.0.7") == Principal(
        "u1", "u1@example.org", "org1", Role.ADMIN, ("otp", "mfa"), "10.0.0.7"
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": issuer.key_id, "typ": "JWT"}
    assert stat.S_IMODE((tmp_path / "keys" / "token-signing.key").stat().st_mode) == 0o600
    # The key persists: a second issuer on the same file verifies the first one's tokens.
    assert LocalIssuer(tmp_path / "keys" / "token-signing.key").verify(token).user_id == "u1"


def test_issue_refuses_bad_input(issuer: LocalIssuer) -> None:
    with pytest.raises(IdentityError, match=r"^unknown role root; one of owner, admin, support, viewer$"):
        issuer.issue("u1", None, "org1", "root", [])
    with pytest.raises(IdentityError, match=r"^token lifetime must be 1 to 3600 seconds$"):
        issuer.issue("u1", None, "org1", "admin", [], ttl_s=86400)


def test_expired(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    old = LocalIssuer(key, clock=lambda: time.time() - 1000)
    with pytest.raises(IdentityError, match=r"^token expired$"):
        LocalIssuer(key).verify(old.issue("u1", None, "org1", "admin", [], ttl_s=900))


def test_not_yet_valid(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    future = LocalIssuer(key, clock=lambda: time.time() + 1000)
    with pytest.raises(IdentityError, match=r"^token not yet valid$"):
        LocalIssuer(key).verify(future.issue("u1", None, "org1", "admin", []))


def test_wrong_audience_and_issuer(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    token = LocalIssuer(key, audience="someone-else").issue("u1", None, "org1", "admin", [])
    with pytest.raises(IdentityError, match=r"^token audience mismatch$"):
        LocalIssuer(key).verify(token)
    token = LocalIssuer(key, issuer="other-issuer").issue("u1", None, "org1", "admin", [])
    with pytest.raises(IdentityError, match=r"^token issuer mismatch$"):
        LocalIssuer(key).verify(token)


def test_tampered_signature_and_claims(issuer: LocalIssuer) -> None:
    token = issuer.issue("u1", None, "org1", "viewer", [])
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BA")
    with pytest.raises(IdentityError, match=r"^token signature invalid$"):
        issuer.verify(f"{head}.{body}.{flipped}")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["role"] = "owner"
    with pytest.raises(IdentityError, match=r"^token signature invalid$"):
        issuer.verify(f"{head}.{b64url(json.dumps(claims).encode())}.{sig}")


def test_other_key_refused(issuer: LocalIssuer, tmp_path: Path) -> None:
    stranger = LocalIssuer(tmp_path / "stranger.key")
    with pytest.raises(IdentityError, match=r"^token signature invalid$"):
        issuer.verify(stranger.issue("u1", None, "org1", "owner", ["mfa"]))


def test_alg_confusion_hs256_with_public_key(issuer: LocalIssuer) -> None:
    """The classic attack: HMAC-sign with the (public) verification key as the secret."""
    public_pem = issuer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    public_raw = issuer.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    now = int(time.time())
    claims = {"iss": "converse-local", "aud": "converse-worker", "sub": "mallory", "org_id": "org1",
              "role": "owner", "amr": ["mfa"], "iat": now, "nbf": now, "exp": now + 600}  # fmt: skip
    for secret in (public_pem, public_raw):
        with pytest.raises(IdentityError, match=r"^token algorithm not allowed$"):
            issuer.verify(forge({"alg": "HS256", "typ": "JWT"}, claims, secret))
    with pytest.raises(IdentityError, match=r"^token algorithm not allowed$"):
        issuer.verify(forge({"alg": "none", "typ": "JWT"}, claims, None))


def test_errors_never_contain_the_token(issuer: LocalIssuer) -> None:
    token = issuer.issue("u1", None, "org1", "viewer", [])
    for bad in (token[:-4], token + "x", "not-a-token", token.replace(".", "!")):
        with pytest.raises(IdentityError) as err:
            issuer.verify(bad)
        assert bad not in str(err.value) and "\n" not in str(err.value)
        assert err.value.__cause__ is None and err.value.__suppress_context__


def test_missing_claims(issuer: LocalIssuer) -> None:
    now = int(time.time())
    base = {"iss": "converse-local", "aud": "converse-worker", "sub": "u1", "iat": now, "nbf": now,
            "exp": now + 600, "org_id": "org1", "role": "admin"}  # fmt: skip
    for claim, message in (("exp", "token lacks claim exp"), ("org_id", "token lacks claim org_id"),
                           ("role", "token lacks claim role")):  # fmt: skip
        claims = {k: v for k, v in base.items() if k != claim}
        token = jwt.encode(claims, issuer.key, algorithm="EdDSA")
        with pytest.raises(IdentityError) as err:
            issuer.verify(token)
        assert str(err.value) == message
    token = jwt.encode({**base, "role": "god"}, issuer.key, algorithm="EdDSA")
    with pytest.raises(IdentityError, match=r"^token has an unknown role$"):
        issuer.verify(token)


def write_jwks(path: Path, keys: list[dict[str, object]] | list[dict[str, str]]) -> Path:
    path.write_text(json.dumps({"keys": keys}))
    return path


def test_oidc_verifier_with_local_jwks(issuer: LocalIssuer, tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", issuer.jwks()["keys"])
    verifier = OidcVerifier("converse-local", "converse-worker", jwks)
    token = issuer.issue("u1", "u1@example.org", "org1", "support", ["mfa"])
    assert verifier.verify(token).role is Role.SUPPORT
    with pytest.raises(IdentityError, match=r"^token audience mismatch$"):
        OidcVerifier("converse-local", "other", jwks).verify(token)


def test_oidc_verifier_es256_provider(tmp_path: Path) -> None:
    provider = generate_private_key(SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(provider.public_key())) | {"kid": "k1", "alg": "ES256"}
    oct_key: dict[str, object] = {"kty": "oct", "k": b64url(b"shared-secret"), "kid": "k2"}
    jwks = write_jwks(tmp_path / "jwks.json", [jwk, oct_key])
    verifier = OidcVerifier("https://idp.example.org", "converse", jwks)
    now = int(time.time())
    claims = {"iss": "https://idp.example.org", "aud": "converse", "sub": "u9", "org_id": "org1",
              "role": "viewer", "iat": now, "nbf": now, "exp": now + 300, "amr": ["pwd", "mfa"]}  # fmt: skip
    good = jwt.encode(claims, provider, algorithm="ES256", headers={"kid": "k1"})
    assert verifier.verify(good).amr == ("pwd", "mfa")
    with pytest.raises(IdentityError, match=r"^token algorithm not allowed$"):
        verifier.verify(forge({"alg": "HS256", "kid": "k2"}, claims, b"shared-secret"))
    with pytest.raises(IdentityError, match=r"^token key id unknown$"):
        verifier.verify(jwt.encode(claims, provider, algorithm="ES256", headers={"kid": "k9"}))
    decade = claims | {"exp": now + 10 * 365 * 86400}  # a provider-signed token that outlives revocation
    with pytest.raises(IdentityError, match=r"^token lifetime exceeds 86400 seconds$"):
        verifier.verify(jwt.encode(decade, provider, algorithm="ES256", headers={"kid": "k1"}))
    day = claims | {"exp": now + 86400}
    a_day = jwt.encode(day, provider, algorithm="ES256", headers={"kid": "k1"})
    assert verifier.verify(a_day).org_id == "org1"
    with pytest.raises(IdentityError, match=r"^algorithms not allowed for OIDC tokens: HS256$"):
        OidcVerifier("x", "y", jwks, algorithms=["ES256", "HS256"])
    with pytest.raises(IdentityError, match=r"^JWKS holds no usable public key$"):
        OidcVerifier("x", "y", write_jwks(tmp_path / "oct.json", [oct_key]))
    with pytest.raises(IdentityError, match=r"^a JWKS URL must use https$"):
        OidcVerifier("x", "y", "http://idp.example.org/jwks")


def test_static_token(tmp_path: Path) -> None:
    static = StaticTokenVerifier(STATIC)
    principal = static.verify(STATIC, ip="127.0.0.1")
    assert principal == Principal("static-token", None, "default", Role.OWNER, ("static",), "127.0.0.1")
    assert check(principal, "configure_security").allowed
    assert check(principal, "read_transcripts").reason == "mfa required for read_transcripts"
    with pytest.raises(IdentityError, match=r"^token invalid$"):
        static.verify(STATIC[:-1] + "X")
    with pytest.raises(IdentityError, match=r"^CONVERSE_API_TOKEN must be at least 16 characters$"):
        StaticTokenVerifier("short")


def test_authenticator(issuer: LocalIssuer, tmp_path: Path) -> None:
    auth = Authenticator(static=StaticTokenVerifier(STATIC), issuers={"converse-local": issuer})
    token = issuer.issue("u1", None, "org1", "admin", ["otp", "mfa"])
    assert auth.authenticate(f"Bearer {token}", "10.0.0.1").ip == "10.0.0.1"
    assert auth.authenticate(f"bearer {STATIC}").user_id == "static-token"
    other = LocalIssuer(tmp_path / "other.key", issuer="elsewhere").issue(
        "u1", None, "org1", "owner", ["mfa"]
    )
    cases = [
        (None, "missing bearer token"),
        ("Basic dTE6cHc=", "authorization must be a bearer token"),
        ("Bearer ", "authorization must be a bearer token"),
        (f"Bearer {other}", "token issuer not trusted"),
        ("Bearer a.b.c", "token malformed"),
        ("Bearer wrong-static-token-value", "token invalid"),
    ]
    for header, message in cases:
        with pytest.raises(IdentityError) as err:
            auth.authenticate(header)
        assert str(err.value) == message


def test_issue_for_user_requires_totp_once(issuer: LocalIssuer, tmp_path: Path) -> None:
    totp = TotpStore(tmp_path / "users.json")
    secret = totp.enroll("u1", "u1@example.org").secret
    now = time.time()

    def issue(code: str | None) -> str:
        return issue_for_user(issuer, totp, user_id="u1", email="u1@example.org", org_id="org1", role="admin",
                              code=code, now=now)  # fmt: skip

    with pytest.raises(IdentityError, match=r"^user u1 is enrolled for TOTP: a code is required$"):
        issue(None)
    assert issuer.verify(issue(code_at(secret, now))).amr == ("otp", "mfa")
    with pytest.raises(ReusedCodeError):
        issue(code_at(secret, now))
    plain = issue_for_user(
        issuer, totp, user_id="u2", email=None, org_id="org1", role="admin", code=None, now=now
    )
    principal = issuer.verify(plain)
    assert principal.amr == ("local",)
    assert not check(principal, "read_transcripts").allowed
    with pytest.raises(IdentityError, match=r"^user u2 is not enrolled for TOTP$"):
        issue_for_user(
            issuer, totp, user_id="u2", email=None, org_id="org1", role="admin", code="123456", now=now
        )
    with pytest.raises(IdentityError, match=r"^email does not match the TOTP enrolment of user u1$"):
        issue_for_user(issuer, totp, user_id="u1", email="x@example.org", org_id="org1", role="admin",
                       code=code_at(secret, now + 30), now=now)  # fmt: skip


def test_ed25519_key_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    LocalIssuer(key).issue("u1", None, "org1", "admin", [])
    key.chmod(0o640)
    with pytest.raises(AuditError, match=r"is readable by group or others; chmod 600 it$"):
        LocalIssuer(key).issue("u1", None, "org1", "admin", [])


def test_a_token_living_longer_than_the_maximum_is_refused(issuer: LocalIssuer) -> None:
    now = int(time.time())
    base = {"iss": "converse-local", "aud": "converse-worker", "sub": "u1", "org_id": "org1", "role": "admin",
            "amr": ["otp", "mfa"]}  # fmt: skip
    ten_years = 10 * 365 * 86400
    for iat, exp in ((now, now + ten_years), (now - ten_years, now + 600), (now - 3500, now + 3600)):
        token = jwt.encode({**base, "iat": iat, "nbf": iat, "exp": exp}, issuer.key, algorithm="EdDSA")
        with pytest.raises(IdentityError, match=r"^token lifetime exceeds 3600 seconds$"):
            issuer.verify(token)
    # A short life claimed by an iat in the future does not help (PyJWT refuses such an iat).
    claims = {**base, "iat": now + ten_years - 600, "nbf": now, "exp": now + ten_years}
    with pytest.raises(IdentityError, match=r"^token not yet valid$"):
        issuer.verify(jwt.encode(claims, issuer.key, algorithm="EdDSA"))
    token = jwt.encode(
        {**base, "iat": now, "nbf": now, "exp": now + MAX_TTL_S}, issuer.key, algorithm="EdDSA"
    )
    assert issuer.verify(token).user_id == "u1"

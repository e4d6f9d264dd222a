"""RFC 9605 Appendix C vectors (tests/data/sframe_rfc9605_vectors.json, the repo's copy of
../shared/data/sframe_rfc9605_vectors.json: test_sframe_js checks they match), every case, both directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from media import sframe

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "sframe_rfc9605_vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
HEADER: list[dict[str, Any]] = VECTORS["header"]
CTR_HMAC: list[dict[str, Any]] = VECTORS["aes_ctr_hmac"]
SFRAME: list[dict[str, Any]] = VECTORS["sframe"]


def h(v: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(v[name])


def test_vector_counts() -> None:
    assert (len(HEADER), len(CTR_HMAC), len(SFRAME)) == (289, 3, 5)
    assert {v["cipher_suite"] for v in SFRAME} == {int(s) for s in sframe.CipherSuite}


@pytest.mark.parametrize("v", HEADER, ids=lambda v: f"kid{v['kid']:x}-ctr{v['ctr']:x}")
def test_header_encode_decode(v: dict[str, Any]) -> None:
    encoded = h(v, "encoded")
    assert sframe.encode_header(v["kid"], v["ctr"]) == encoded
    assert sframe.parse_header(encoded) == (v["kid"], v["ctr"], len(encoded))
    assert sframe.parse_header(encoded + b"\xaa\xbb") == (v["kid"], v["ctr"], len(encoded))
    if len(encoded) > 1:
        with pytest.raises(sframe.MalformedHeaderError):
            sframe.parse_header(encoded[:-1])


@pytest.mark.parametrize("v", CTR_HMAC, ids=lambda v: f"suite{v['cipher_suite']}")
def test_aes_ctr_hmac(v: dict[str, Any]) -> None:
    suite = v["cipher_suite"]
    params = sframe.suite_params(suite)
    key = h(v, "key")
    assert key[: params.nka] == h(v, "enc_key") and key[params.nka :] == h(v, "auth_key")
    aead = sframe.CtrHmac(suite, key)
    assert aead.encrypt(h(v, "nonce"), h(v, "pt"), h(v, "aad")) == h(v, "ct")
    assert aead.decrypt(h(v, "nonce"), h(v, "ct"), h(v, "aad")) == h(v, "pt")
    assert len(h(v, "ct")) - len(h(v, "pt")) == params.nt


@pytest.mark.parametrize("v", SFRAME, ids=lambda v: sframe.CipherSuite(v["cipher_suite"]).name)
def test_sframe_derivations(v: dict[str, Any]) -> None:
    suite, kid, ctr = v["cipher_suite"], v["kid"], v["ctr"]
    p = sframe.suite_params(suite)
    assert sframe.key_label(kid, suite) == h(v, "sframe_key_label")
    assert sframe.salt_label(kid, suite) == h(v, "sframe_salt_label")
    assert sframe.hkdf_extract(p.hash_name, b"", h(v, "base_key")) == h(v, "sframe_secret")
    assert sframe.derive_key_salt(suite, h(v, "base_key"), kid) == (h(v, "sframe_key"), h(v, "sframe_salt"))
    assert sframe.make_nonce(h(v, "sframe_salt"), ctr) == h(v, "nonce")
    assert sframe.encode_header(kid, ctr) + h(v, "metadata") == h(v, "aad")


@pytest.mark.parametrize("v", SFRAME, ids=lambda v: sframe.CipherSuite(v["cipher_suite"]).name)
def test_sframe_protect_unprotect(v: dict[str, Any]) -> None:
    suite, kid, ctr = v["cipher_suite"], v["kid"], v["ctr"]
    ct = sframe.protect(suite, h(v, "base_key"), kid, ctr, h(v, "pt"), h(v, "metadata"))
    assert ct == h(v, "ct")
    assert sframe.unprotect(suite, h(v, "base_key"), h(v, "ct"), h(v, "metadata")) == h(v, "pt")
    assert sframe.parse_header(ct)[:2] == (kid, ctr)
    # Through the stateful classes too.
    receiver = sframe.SFrameReceiver(suite)
    receiver.add_key(kid, h(v, "base_key"))
    assert receiver.unprotect(h(v, "ct"), h(v, "metadata")) == h(v, "pt")
    with pytest.raises(sframe.SFrameAuthError, match=rf"^SFrame KID {kid} CTR {ctr}: authentication failed$"):
        sframe.unprotect(suite, h(v, "base_key"), h(v, "ct"), b"other metadata")

"""The browser SFrame module (worker/static/sframe.js) against the RFC 9605 vectors and `media.sframe`.

Fast path: the module under Node.js (tests/js/sframe_runner.mjs: JSON requests on stdin, results on stdout).
Slow path: the same vector checks, and a real `RTCRtpScriptTransform` on a loopback call, in headless
Chromium.
KIDs and CTRs cross the JSON boundary as decimal strings (they reach 2^64-1), bytes as hex.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media import sframe

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "worker" / "static"
JS = ROOT / "tests" / "js"
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "data" / "sframe_rfc9605_vectors.json").read_text())
HEADER: list[dict[str, Any]] = VECTORS["header"]
CTR_HMAC: list[dict[str, Any]] = VECTORS["aes_ctr_hmac"]
SFRAME: list[dict[str, Any]] = VECTORS["sframe"]
SUITES = [int(s) for s in sframe.CipherSuite]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def require(tool: str) -> str:
    """The tool's path; skip locally when it is missing, fail under CI=true (CI installs every tool)."""
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} not found (apt-get install nodejs chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def b64url(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def node_json(script: Path, payload: Any) -> Any:
    node = require("node")
    proc = subprocess.run(
        [node, str(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_js(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = node_json(JS / "sframe_runner.mjs", requests)
    assert len(results) == len(requests)
    return results


# --- Requests for the RFC vectors, shared by the Node and the Chromium runs ---------------------------------


def vector_requests() -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = []
    for v in HEADER:
        enc = v["encoded"]
        reqs.append({"op": "header", "kid": str(v["kid"]), "ctr": str(v["ctr"])})
        reqs.append({"op": "parse", "data": enc})
        reqs.append({"op": "parse", "data": enc + "aabb"})
        reqs.append({"op": "parse", "data": enc[:-2]})
    for v in CTR_HMAC:
        common = {"suite": v["cipher_suite"], "key": v["key"], "nonce": v["nonce"], "aad": v["aad"]}
        reqs.append({"op": "aead_encrypt", **common, "pt": v["pt"]})
        reqs.append({"op": "aead_decrypt", **common, "ct": v["ct"]})
    for v in SFRAME:
        suite, key, kid, ctr = v["cipher_suite"], v["base_key"], str(v["kid"]), str(v["ctr"])
        reqs.append({"op": "derive", "suite": suite, "base_key": key, "kid": kid, "ctr": ctr})
        reqs.append({"op": "protect", "suite": suite, "key": key, "kid": kid, "ctr": ctr, "pt": v["pt"],
                     "metadata": v["metadata"]})  # fmt: skip
        reqs.append({"op": "unprotect", "suite": suite, "key": key, "ct": v["ct"], "metadata": v["metadata"]})
        reqs.append({"op": "unprotect", "suite": suite, "key": key, "ct": v["ct"], "metadata": "00"})
    return reqs


def check_vector_results(results: list[dict[str, Any]]) -> int:
    """Assert every result against the vectors; returns the number of checks."""
    it = iter(results)
    checks = 0
    for v in HEADER:
        enc, kid, ctr = v["encoded"], str(v["kid"]), str(v["ctr"])
        parsed = {"kid": kid, "ctr": ctr, "length": len(enc) // 2}
        assert next(it) == {"ok": enc}, v
        assert next(it) == {"ok": parsed}, v
        assert next(it) == {"ok": parsed}, v
        truncated = next(it)
        if len(enc) > 2:
            assert truncated["error"] == "MalformedHeaderError", v
        else:
            assert truncated == {"error": "MalformedHeaderError", "message": "SFrame header: empty frame"}
        checks += 4
    for v in CTR_HMAC:
        assert next(it) == {"ok": v["ct"]}, v
        assert next(it) == {"ok": v["pt"]}, v
        checks += 2
    for v in SFRAME:
        derived = next(it)["ok"]
        for name in ("sframe_key_label", "sframe_salt_label", "sframe_key", "sframe_salt", "nonce"):
            assert derived[name] == v[name], (v["cipher_suite"], name)
        assert next(it) == {"ok": v["ct"]}, v["cipher_suite"]
        assert next(it) == {"ok": v["pt"]}, v["cipher_suite"]
        assert next(it) == {
            "error": "SFrameAuthError",
            "message": f"SFrame KID {v['kid']} CTR {v['ctr']}: authentication failed",
        }
        checks += 4
    assert next(it, None) is None
    return checks


def test_vector_file_is_the_shared_copy() -> None:
    copy = ROOT / "tests" / "data" / "sframe_rfc9605_vectors.json"
    # sha256 of ../shared/data/sframe_rfc9605_vectors.json as given; a clean clone elsewhere has only this.
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == (
        "d6615ce26b61fc0ceae67596d9425d4085607101f105c0fc7d8a21736c3a305a"
    )
    shared = ROOT.parent / "shared" / "data" / "sframe_rfc9605_vectors.json"
    if shared.exists():
        assert json.loads(shared.read_text()) == VECTORS
    assert (len(HEADER), len(CTR_HMAC), len(SFRAME)) == (289, 3, 5)


def test_node_rfc_vectors() -> None:
    assert check_vector_results(run_js(vector_requests())) == 289 * 4 + 3 * 2 + 5 * 4


# --- JS <-> Python on random inputs -------------------------------------------------------------------------


def random_cases(seed: int, per_suite: int = 12) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    for suite in SUITES:
        for i in range(per_suite):
            width = rng.choice([3, 8, 16, 40, 64])
            cases.append({
                "suite": suite,
                "key": rng.randbytes(rng.choice([16, 32, 48])),
                "kid": [0, 7, 8, sframe.MAX_VALUE][i] if i < 4 else rng.getrandbits(width),
                "ctr": [sframe.MAX_VALUE, 8, 7, 0][i] if i < 4 else rng.getrandbits(width),
                "pt": rng.randbytes(rng.choice([0, 1, 15, 16, 17, 160, 1275])),
                "metadata": rng.randbytes(rng.choice([0, 0, 5, 33])),
            })  # fmt: skip
    return cases


def protect_request(c: dict[str, Any]) -> dict[str, Any]:
    hexed = {name: c[name].hex() for name in ("key", "pt", "metadata")}
    return {"op": "protect", "suite": c["suite"], "kid": str(c["kid"]), "ctr": str(c["ctr"]), **hexed}


def test_js_protects_python_unprotects() -> None:
    cases = random_cases(9605)
    results = run_js([protect_request(c) for c in cases])
    for c, r in zip(cases, results, strict=True):
        ct = bytes.fromhex(r["ok"])
        assert sframe.unprotect(c["suite"], c["key"], ct, c["metadata"]) == c["pt"]
        assert sframe.parse_header(ct)[:2] == (c["kid"], c["ctr"])
        # Deterministic for a given (key, KID, CTR): byte-identical to Python's protect.
        assert ct == sframe.protect(c["suite"], c["key"], c["kid"], c["ctr"], c["pt"], c["metadata"])


def test_python_protects_js_unprotects() -> None:
    cases = random_cases(8321)
    cts = [sframe.protect(c["suite"], c["key"], c["kid"], c["ctr"], c["pt"], c["metadata"]) for c in cases]
    tampered = []
    for i, ct in enumerate(cts):
        flipped = bytearray(ct)
        flipped[-1 - i % len(ct[sframe.parse_header(ct)[2] :])] ^= 0x01  # a byte of ciphertext or tag
        tampered.append(bytes(flipped))
    requests = [
        {
            "op": "unprotect",
            "suite": c["suite"],
            "key": c["key"].hex(),
            "ct": ct.hex(),
            "metadata": c["metadata"].hex(),
        }
        for c, ct in zip(cases + cases, cts + tampered, strict=True)
    ]
    results = run_js(requests)
    n = len(cases)
    for c, r in zip(cases, results[:n], strict=True):
        assert r == {"ok": c["pt"].hex()}
    for c, r in zip(cases, results[n:], strict=True):
        assert r == {
            "error": "SFrameAuthError",
            "message": f"SFrame KID {c['kid']} CTR {c['ctr']}: authentication failed",
        }


def test_js_errors() -> None:
    key = "00" * 16
    results = run_js([
        {"op": "protect", "suite": 9, "key": key, "kid": "1", "ctr": "0", "pt": ""},
        {"op": "protect", "suite": 4, "key": key, "kid": str(1 << 64), "ctr": "0", "pt": ""},
        {"op": "protect", "suite": 4, "key": key, "kid": "1", "ctr": "-1", "pt": ""},
        {"op": "protect", "suite": 4, "key": "", "kid": "1", "ctr": "0", "pt": ""},
        {"op": "unprotect", "suite": 4, "key": key, "ct": ""},
        {"op": "unprotect", "suite": 4, "key": key, "ct": "99"},
    ])  # fmt: skip
    assert results == [
        {"error": "SFrameError", "message": "unknown SFrame cipher suite 9"},
        {"error": "MalformedHeaderError", "message": "SFrame KID does not fit in 8 bytes"},
        {"error": "CounterExhaustedError", "message": "SFrame KID 1: CTR -1 outside 0..2^64-1"},
        {"error": "SFrameError", "message": "SFrame base key must not be empty"},
        {"error": "MalformedHeaderError", "message": "SFrame header: empty frame"},
        {"error": "MalformedHeaderError", "message": "SFrame header: KID needs 2 bytes, 0 present"},
    ]


@pytest.mark.parametrize("suite", SUITES)
def test_sender_counts_from_zero_and_refuses_a_used_key(suite: int) -> None:
    key = random.Random(suite).randbytes(16)
    frames = [bytes([i]) * (i + 1) for i in range(10)]
    request = {
        "op": "sender",
        "suite": suite,
        "key": key.hex(),
        "kid": "300",
        "frames": [f.hex() for f in frames],
    }
    first, again, other_kid = run_js([request, request, {**request, "kid": "301"}])
    receiver = sframe.SFrameReceiver(suite)
    receiver.add_key(300, key)
    for ctr, (pt, ct) in enumerate(zip(frames, first["ok"], strict=True)):
        data = bytes.fromhex(ct)
        assert sframe.parse_header(data)[:2] == (300, ctr)
        assert receiver.unprotect(data) == pt
    assert again == {
        "error": "SFrameError",
        "message": "SFrame KID 300: this key and KID already had a sender",
    }
    assert len(other_kid["ok"]) == len(frames)


# --- The transform worker -----------------------------------------------------------------------------------


def test_worker_script_parses() -> None:
    node = require("node")
    for script in (STATIC / "e2ee-worker.js", STATIC / "sframe.js"):
        proc = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr


def opus_like_frames(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes([0x78]) + rng.randbytes(rng.randint(2, 160)) for _ in range(n)]


@pytest.mark.parametrize("wait_for_key", [True, False], ids=["rotation-acknowledged", "rotation-in-flight"])
@pytest.mark.parametrize("suite", [4, 5, 1])
def test_worker_transform_with_rotation(suite: int, wait_for_key: bool) -> None:
    rng = random.Random(suite)
    key1, key2 = rng.randbytes(16), rng.randbytes(32)
    frames = opus_like_frames(40, suite)
    out = node_json(JS / "worker_harness.mjs", {
        "options": {"suite": suite, "kid": 1, "key": b64url(key1)},
        "frames": [f.hex() for f in frames],
        "rotations": [{"before": 25, "kid": "1000", "key": b64url(key2), "wait": wait_for_key}],
    })  # fmt: skip
    assert out["fresh_buffers"] is True
    assert out["timestamps"] == [960 * i for i in range(len(frames))]
    assert out["stats"] == {
        "type": "stats",
        "protected": 40,
        "dropped": 0,
        "errors": 0,
        "kid": "1000",
        "ctr": "15",
    }
    assert [r["type"] for r in out["replies"][:2]] == ["ready", "rotated"]
    receiver = sframe.SFrameReceiver(suite)
    receiver.add_key(1, key1)
    receiver.add_key(1000, key2)
    headers = []
    for pt, ct in zip(frames, out["frames"], strict=True):
        data = bytes.fromhex(ct)
        headers.append(sframe.parse_header(data)[:2])
        assert receiver.unprotect(data) == pt
    assert headers == [(1, c) for c in range(25)] + [(1000, c) for c in range(15)]


def test_worker_without_a_key_drops_every_frame() -> None:
    out = node_json(
        JS / "worker_harness.mjs", {"options": {}, "frames": [f.hex() for f in opus_like_frames(5, 0)]}
    )
    assert out["frames"] == []
    assert out["stats"]["protected"] == 0 and out["stats"]["dropped"] == 5


def test_worker_bad_rotation_keeps_the_old_key() -> None:
    key = random.Random(7).randbytes(16)
    frames = opus_like_frames(6, 7)
    out = node_json(JS / "worker_harness.mjs", {
        "options": {"suite": 4, "kid": "5", "key": b64url(key)},
        "frames": [f.hex() for f in frames],
        "rotations": [{"before": 3, "kid": "-1", "key": b64url(key)}],
    })  # fmt: skip
    assert {"type": "error", "message": "SFrame rotation failed: MalformedHeaderError"} in out["replies"]
    assert all(key.hex() not in json.dumps(r) and b64url(key) not in json.dumps(r) for r in out["replies"])
    assert [sframe.unprotect(4, key, bytes.fromhex(ct)) for ct in out["frames"]] == frames


# --- Headless Chromium -----------------------------------------------------------------------------------


MIME = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """`/static/*` from worker/static, `/js/*` from tests/js, else a blank page; scripts as JavaScript."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return MIME.get(Path(path).suffix, "text/plain")

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix, directory in (("/static/", STATIC), ("/js/", JS)):
            if path.startswith(prefix) and "/" not in path[len(prefix) :] and ".." not in path:
                return str(directory / path[len(prefix) :])
        return str(JS / "blank.html")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(JS)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    for tool in (CHROMIUM, CHROMEDRIVER):
        require(tool)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_chromium_rfc_vectors(browser: Any, page_server: str) -> None:
    browser.get(page_server)
    results = browser.execute_async_script(
        """
        const [requests, done] = arguments;
        Promise.all([import("/static/sframe.js"), import("/js/sframe_checks.mjs")])
          .then(([sframe, checks]) => checks.run(sframe, requests))
          .then(done, (err) => done([{error: String(err)}]));
        """,
        vector_requests(),
    )
    assert check_vector_results(results) == 289 * 4 + 3 * 2 + 5 * 4


@pytest.mark.slow
def test_chromium_script_transform_loopback_call(browser: Any, page_server: str) -> None:
    """A real RTCRtpScriptTransform: the frames another peer receives are SFrame, opened by media.sframe."""
    key1, key2 = os.urandom(16), os.urandom(16)
    browser.get(page_server)
    out = browser.execute_async_script(
        """
        const [args, done] = arguments;
        import("/js/loopback.mjs").then((m) => m.loopback(args))
          .then(done, (err) => done({error: String(err)}));
        """,
        {"suite": 4, "kid": 7, "key": b64url(key1), "rotate": {"kid": "9", "key": b64url(key2)},
         "rotateAfter": 20, "total": 60},
    )  # fmt: skip
    assert "error" not in out, out
    receiver = sframe.SFrameReceiver(4)
    receiver.add_key(7, key1)
    receiver.add_key(9, key2)
    kids = []
    for ct in out["frames"]:
        data = bytes.fromhex(ct)
        kid = sframe.parse_header(data)[0]
        kids.append(kid)
        assert len(receiver.unprotect(data)) > 0  # the Opus frame inside
    assert kids[0] == 7 and kids[-1] == 9 and kids == sorted(kids)  # one switch, no frame back on the old key
    assert out["stats"]["errors"] == 0 and out["stats"]["kid"] == "9"
    assert out["stats"]["protected"] >= len(out["frames"])

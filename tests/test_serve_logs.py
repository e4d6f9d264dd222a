"""A real `serve`: what outside clients send never reaches its log, and `--log-format json` stays JSON.

An over-long `Converse-Call-Variables` header (base64 JSON holding a name, a DOB and an SSN) makes aiohttp's
parser fail before any handler runs; its log record goes through the worker's chain, not a plain traceback.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

from tests.serve_util import serve

PHI = {"patient_name": "Jane Doe", "dob": "1970-01-02", "ssn": "123-45-6789"}
CANARIES = ("Jane", "Doe", "1970-01-02", "123-45-6789", "123456789")


def _header_value(pad: int) -> str:
    body = json.dumps({**PHI, "note": "x" * pad}).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_overlong_variables_header_leaves_no_phi_and_json_lines(tmp_path: Path) -> None:
    long_value = _header_value(9000)  # past aiohttp's 8190-byte field limit
    short_value = _header_value(10)
    with serve(tmp_path) as server:
        answer = _raw_request(
            server.url,
            f"POST /whip HTTP/1.1\r\nHost: x\r\nConverse-Call-Variables: {long_value}\r\n"
            "Content-Type: application/sdp\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(),
        )
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        for auth in ("", "Authorization: Bearer wrong-token-0123456789\r\n"):
            answer = _raw_request(
                server.url,
                f"POST /whip HTTP/1.1\r\nHost: x\r\n{auth}Converse-Call-Variables: {short_value}\r\n"
                "Content-Type: application/sdp\r\nContent-Length: 3\r\nConnection: close\r\n\r\nv=0".encode(),
            )
            assert b" 401 " in answer.split(b"\r\n")[0]
        time.sleep(0.5)
    text = server.log.read_text()
    assert "Error handling request" in text  # aiohttp did log the failure ...
    for canary in (*CANARIES, long_value[:24], short_value[:24]):
        assert canary not in text, canary  # ... without the header's value
    for line in text.splitlines():
        if line.startswith("converse-worker serving on "):  # the banner tests and humans look for
            continue
        entry = json.loads(line)  # every other line is one JSON object
        assert isinstance(entry, dict) and "event" in entry

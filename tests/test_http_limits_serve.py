"""A real `serve` refuses hostile input with 400 and a one-line reason, never 500: superscript digits in
ids, JSON nested past the parser's depth (in a body and in the variables header), an offer with hundreds of
media sections (at most `--max-tracks` per call)."""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from aiortc import RTCPeerConnection

from tests.serve_util import TOKEN, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _send(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers={**AUTH, **headers})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode()


def _offer(sections: int) -> bytes:
    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    media = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"
    )
    return (head + media * sections).encode()


def _real_offer(tracks: int) -> bytes:
    """An offer from a real aiortc peer with `tracks` send-only audio sections."""

    async def make() -> str:
        pc = RTCPeerConnection()
        try:
            for _ in range(tracks):
                pc.addTransceiver("audio", direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            return str(pc.localDescription.sdp)
        finally:
            await pc.close()

    return asyncio.run(make()).encode()


def test_hostile_input_is_400_not_500(tmp_path: Path) -> None:
    with serve(tmp_path, max_tracks="4") as srv:
        for path in (
            "/v1/audit/proof/\u00b2",
            "/v1/calls/abc/tracks/\u00b9/recording",
            "/v1/calls/\u00b2\u00b3",
        ):
            status, text = _send(srv.url + urllib.parse.quote(path))
            assert status == 400, (path, status, text)
        deep = b"[" * 200_000
        status, text = _send(srv.url + "/v1/settings", "PUT", deep, **{"Content-Type": "application/json"})
        assert status in (400, 413), (status, text)
        deep = b"[" * 60_000
        status, text = _send(srv.url + "/v1/settings", "PUT", deep, **{"Content-Type": "application/json"})
        assert (status, text) == (400, '{"error": "request body is nested too deeply"}')
        header = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
        status, text = _send(
            srv.url + "/whip",
            "POST",
            _offer(1),
            **{"Content-Type": "application/sdp", "Converse-Call-Variables": header},
        )
        assert (status, text) == (400, "Converse-Call-Variables: not base64url JSON\n")
        sdp = {"Content-Type": "application/sdp"}
        for sections, offer in ((540, _offer(540)), (5, _real_offer(5))):
            status, text = _send(srv.url + "/whip", "POST", offer, **sdp)
            assert (status, text) == (400, f"offer has {sections} media sections: at most 4 per call\n")
        status, _ = _send(srv.url + "/whip", "POST", _real_offer(4), **sdp)
        assert status == 201  # at the limit: a call
        with urllib.request.urlopen(srv.url + "/readyz", timeout=10) as resp:
            assert resp.status == 200  # nothing was left behind
    log = srv.log.read_text()
    assert "Traceback" not in log and "RecursionError" not in log

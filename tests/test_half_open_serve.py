"""Half-open sessions on a real `serve` (issue 18 item 6): 40 offers whose client never does ICE, then a
normal call (the `call` command, its own process), which is accepted and transcribed. The half-open ones
hold no call slot, are reported on /readyz and /metrics, and are gone a connect timeout later."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from tests.serve_util import TOKEN, Server, serve, start_call
from tests.support import FIXTURES, json_lines, run_cli
from worker.webrtc.peer import loopback_only

pytestmark = pytest.mark.slow

HALF_OPEN = 40
MAX_HALF_OPEN = 16  # WebRtcConfig's default
CONNECT_TIMEOUT_S = 5.0  # ... and its connect timeout


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def _metric(srv: Server, name: str, labels: str = "") -> float:
    _, text = _get(srv.url + "/metrics")
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _ended(srv: Server, reason: str | None = None) -> float:
    reasons = [reason] if reason else ["evicted", "timeout", "closed"]
    return sum(_metric(srv, "converse_half_open_ended_total", f'{{reason="{r}"}}') for r in reasons)


async def _half_open_offers(url: str, n: int) -> tuple[list[int], list[RTCPeerConnection]]:
    """POST `n` offers one after another and never apply the answers: no ICE, no DTLS, ever."""
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    statuses, pcs = [], []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("audio", direction="sendonly").setCodecPreferences(opus)
            await pc.setLocalDescription(await pc.createOffer())
            pcs.append(pc)
            async with http.post(url + "/whip", data=pc.localDescription.sdp, headers=headers) as resp:
                statuses.append(resp.status)
    return statuses, pcs


def test_half_open_offers_then_a_normal_call_is_accepted_and_transcribed(tmp_path: Path) -> None:
    with serve(tmp_path, admission_offer_burst="100") as srv, loopback_only():
        loop = asyncio.new_event_loop()
        try:
            statuses, pcs = loop.run_until_complete(_half_open_offers(srv.url, HALF_OPEN))
            flooded = time.monotonic()
            assert statuses == [201] * HALF_OPEN  # each newer offer ends the oldest half-open one
            status, body = _get(srv.url + "/readyz")
            ready = json.loads(body)
            assert status == 200 and ready["ready"] is True, ready
            assert ready["connected_calls"] == 0 and 0 < ready["half_open_calls"] <= MAX_HALF_OPEN
            assert _metric(srv, "converse_half_open_calls") == ready["half_open_calls"]
            # Every offer is accounted for: still half-open, or ended for a newer one (or timed out, on a
            # machine so loaded that the flood took longer than the connect timeout).
            assert ready["half_open_calls"] + _ended(srv) == HALF_OPEN
            assert _ended(srv, "evicted") >= HALF_OPEN - MAX_HALF_OPEN

            proc = start_call(srv, FIXTURES / "example_call.flac")  # right after the flood
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
            result = json.loads(out.strip().splitlines()[-1])
            assert result["server"]["status"] == "ended"
            assert result["server"]["frames_lost"] == 0
            assert result["server"]["frames_received"] == sum(result["frames_sent"])

            while json.loads(_get(srv.url + "/readyz")[1])["half_open_calls"] > 0:
                assert time.monotonic() - flooded < CONNECT_TIMEOUT_S + 20, "half-open sessions linger"
                time.sleep(0.2)
            assert _ended(srv) == HALF_OPEN and _ended(srv, "closed") == 0
            assert _ended(srv, "timeout") > 0  # the last ones, after the connect timeout
        finally:
            for pc in pcs if "pcs" in locals() else []:
                loop.run_until_complete(pc.close())
            loop.close()
    utts = json_lines(run_cli(["transcripts", "show", result["call_id"], "--json"], srv.env).stdout)
    words = set(re.findall(r"[a-z]+", " ".join(u["text"] for u in utts).lower()))
    assert {"appointment", "tuesday"} <= words, words

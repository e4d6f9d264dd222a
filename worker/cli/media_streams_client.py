"""`converse-worker call --media-streams ws://HOST:PORT/media-streams FIXTURE`: a telephony provider, in
software. Streams a fixture to a worker the way Twilio Media Streams does: one WebSocket, `connected`,
`start` (a fresh streamSid/callSid, tracks `inbound` then `outbound` for fixture tracks 0 and 1, the
fixture's runtime variables as `customParameters`), then every 20 ms one `media` message per track
(160 bytes of 8 kHz mu-law, base64, `chunk` counting from 1, `timestamp` in ms), paced in real time, then
`tail_s` of silence and `stop`. It waits for the worker to close the socket: after a started call the
close reason is `call <call_id>: <how it ended>`, which is how the caller learns the call id.

The token goes in the URL (`?token=`) or, with `auth_in="parameters"`, in `customParameters.token`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import numpy as np

from media import mulaw
from media.fixtures import FixtureError, load_fixture
from media.media_streams import TRACKS
from worker.cli.errors import CommandError

CHUNK_MS: Final = 20
CLOSE_WAIT_S: Final = 120.0  # the worker finalises the last utterances before it closes


class MediaStreamsClientError(Exception):
    """The stream could not be sent; one line."""


def mulaw_chunks(pcm48: np.ndarray) -> list[bytes]:
    """48 kHz int16 -> 20 ms mu-law chunks (160 bytes; the last one padded with silence)."""
    pcm8 = mulaw.Downsampler48to8().process(pcm48)
    pad = -len(pcm8) % mulaw.CHUNK_SAMPLES
    data = mulaw.encode(np.concatenate((pcm8, np.zeros(pad, dtype=np.int16))))
    n = mulaw.CHUNK_SAMPLES
    return [data[i : i + n] for i in range(0, len(data), n)]


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"token": token})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _media(stream_sid: str, seq: int, track: str, chunk: int, ts_ms: int, payload: bytes) -> str:
    media = {
        "track": track,
        "chunk": str(chunk),
        "timestamp": str(ts_ms),
        "payload": base64.b64encode(payload).decode(),
    }
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid, "media": media})


async def stream_call(
    url: str,
    tracks: Sequence[np.ndarray],
    token: str,
    *,
    variables: Mapping[str, str] | None = None,
    auth_in: str = "query",
    realtime: bool = True,
    tail_s: float = 1.5,
    send_stop: bool = True,
    call_sid: str | None = None,
) -> dict[str, Any]:
    """Send `tracks` (48 kHz int16, at most 2) as one media stream; returns what was sent and how it ended.

    `send_stop=False` hangs up instead: the socket is closed without `stop` (no call id comes back then)."""
    if not 1 <= len(tracks) <= len(TRACKS):
        raise MediaStreamsClientError(f"a media stream carries 1 or 2 tracks, the fixture has {len(tracks)}")
    names = TRACKS[: len(tracks)]
    chunks = [mulaw_chunks(t) for t in tracks]
    steps = max(len(c) for c in chunks) + round(tail_s * 1000 / CHUNK_MS)
    silence = bytes([0xFF]) * mulaw.CHUNK_SAMPLES
    stream_sid, call_sid = _sid("MZ"), call_sid or _sid("CA")
    params = dict(variables or {})
    if auth_in == "parameters":
        params["token"] = token
    elif token:
        url = _with_token(url, token)
    start = {
        "streamSid": stream_sid,
        "accountSid": _sid("AC"),
        "callSid": call_sid,
        "tracks": list(names),
        "customParameters": params,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    sent = [0] * len(names)
    result: dict[str, Any] = {"stream_sid": stream_sid, "call_sid": call_sid, "frames_sent": sent}
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=True) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send_str(
                json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": start})
            )
            seq, t0 = 1, time.monotonic()
            result["started_at"] = time.time()  # wall clock of chunk 1 (benchmarks time finals by it)
            for step in range(steps):
                if ws.closed:
                    break
                if realtime and (wait := t0 + step * CHUNK_MS / 1000 - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                for i, name in enumerate(names):
                    payload = chunks[i][step] if step < len(chunks[i]) else silence
                    seq += 1
                    await ws.send_str(_media(stream_sid, seq, name, step + 1, step * CHUNK_MS, payload))
                    sent[i] += 1
            if send_stop and not ws.closed:
                stop = {"accountSid": start["accountSid"], "callSid": call_sid}
                await ws.send_str(
                    json.dumps(
                        {
                            "event": "stop",
                            "sequenceNumber": str(seq + 1),
                            "streamSid": stream_sid,
                            "stop": stop,
                        }
                    )
                )
            reason = ""
            if not send_stop:  # the provider hangs up: the socket closes without `stop`
                await ws.close()
            async with asyncio.timeout(CLOSE_WAIT_S):
                while not ws.closed:
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.CLOSE:
                        reason = msg.extra if isinstance(msg.extra, str) else ""
                        break
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
            result["close_code"] = ws.close_code
            result["close_reason"] = reason
    except aiohttp.WSServerHandshakeError as exc:
        raise MediaStreamsClientError(f"worker refused the stream: HTTP {exc.status}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise MediaStreamsClientError(f"media stream failed ({type(exc).__name__})") from None
    head, _, _ = result["close_reason"].partition(":")
    if head.startswith("call "):
        result["call_id"] = head.removeprefix("call ").strip()
    return result


async def run(args: argparse.Namespace) -> int:
    """The `call --media-streams` command."""
    token = args.token or os.environ.get("CONVERSE_API_TOKEN") or ""
    if not token:
        raise CommandError("a bearer token is required (--token or CONVERSE_API_TOKEN)")
    path = args.fixture or args.url
    try:
        fixture = await asyncio.to_thread(load_fixture, path)
    except FixtureError as exc:
        raise CommandError(str(exc)) from None
    try:
        result = await stream_call(
            args.media_streams,
            [t.pcm for t in fixture.tracks],
            token,
            variables=fixture.variables,
            tail_s=args.tail,
        )
    except MediaStreamsClientError as exc:
        raise CommandError(str(exc)) from None
    result["fixture"] = fixture.name
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"stream {result['call_sid']}: sent {sum(result['frames_sent'])} chunks on "
            f"{len(result['frames_sent'])} track(s); worker closed {result.get('close_code')} "
            f"{result.get('close_reason')}"
        )
    if result.get("close_code") != aiohttp.WSCloseCode.OK:
        print(f"error: stream closed with {result.get('close_code')}", file=sys.stderr)
        return 1
    return 0

"""`GET /media-streams` in process: the real app (`build_app`), engine and memory stores, a scripted
transcriber. Token in `customParameters`, codec-aware recording and speech, variables, no-media timeout,
shared capacity, draining, binary messages, loss counting."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from media.asr import AsrScheduler, FakeTranscriber
from media.fixtures import load_fixture
from media.recording import decode_header, read_recording
from storage.audit_store import AuditLog
from storage.factory import memory_stores
from storage.keys import LocalKeyFile, track_key_context
from tests.support import FIXTURES
from worker.app_context import AppContext
from worker.auth.access import Role
from worker.auth.identity import Authenticator, LocalIssuer
from worker.auth.security import LOCAL_ISSUER, Security
from worker.auth.totp import TotpStore
from worker.calls.engine import Engine, EngineConfig
from worker.cli.media_streams_client import mulaw_chunks
from worker.http.admission import AdmissionConfig
from worker.http.app import build_app
from worker.metrics import Metrics
from worker.webrtc.peer import Calls, WebRtcConfig

ORG = "org-a"
SID = "MZ00000000000000000000000000000001"
CALL_SID = "CA00000000000000000000000000000001"


@dataclass
class App:
    client: TestClient[Any, Any]
    ctx: AppContext
    calls: Calls
    keys: LocalKeyFile
    token: str


@asynccontextmanager
async def open_app(
    tmp_path: Path, script: list[str], admission: AdmissionConfig | None = None, **webrtc: Any
) -> AsyncIterator[App]:
    keys = LocalKeyFile(tmp_path / "keys" / "kek.json")
    audit = AuditLog.in_data_dir(tmp_path / "data", key_path=tmp_path / "keys" / "audit.key")
    issuer = LocalIssuer(tmp_path / "keys" / "issuer.key", issuer=LOCAL_ISSUER, audience="converse-worker")
    totp = TotpStore(tmp_path / "data" / "users.json", key_provider=keys)
    security = Security(audit, issuer, totp, Authenticator(issuers={LOCAL_ISSUER: issuer}))
    stores = memory_stores()
    sched = AsrScheduler(FakeTranscriber(script), workers=1)
    metrics = Metrics()
    engine = Engine(
        transcripts=stores.transcripts,
        recordings=stores.recordings,
        keys=keys,
        asr=sched,
        metrics=metrics,
        config=EngineConfig(org_id=ORG, flush_interval_s=0.05),
    )
    ctx = AppContext(org_id=ORG, stores=stores, keys=keys, security=security, engine=engine, metrics=metrics)
    token = issuer.issue("admin-user", "admin@example.org", ORG, Role.ADMIN, ["otp", "mfa"])
    try:
        async with Calls(engine, WebRtcConfig(loopback_only=True, **webrtc)) as calls:
            async with TestClient(TestServer(build_app(ctx, calls, admission))) as client:
                yield App(client, ctx, calls, keys, token)
    finally:
        await sched.aclose()
        await audit.close()


def start(params: dict[str, str], tracks: list[str] | None = None) -> str:
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    body = {
        "streamSid": SID,
        "callSid": CALL_SID,
        "tracks": tracks or ["inbound"],
        "customParameters": params,
    }
    return json.dumps({"event": "start", "streamSid": SID, "start": {**body, "mediaFormat": fmt}})


def media(chunk: int, payload: bytes, track: str = "inbound") -> str:
    m = {
        "track": track,
        "chunk": chunk,
        "timestamp": 20 * (chunk - 1),
        "payload": base64.b64encode(payload).decode(),
    }
    return json.dumps({"event": "media", "streamSid": SID, "media": m})


STOP = json.dumps({"event": "stop", "streamSid": SID, "stop": {"callSid": CALL_SID}})


async def closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    msg = await ws.receive(timeout=30)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return msg.data, msg.extra


def speech_chunks(seconds: float) -> list[bytes]:
    pcm = load_fixture(FIXTURES / "asr" / "00.opus").tracks[0].pcm
    return mulaw_chunks(pcm[: int(seconds * 48_000)])


async def test_token_in_custom_parameters_variables_redact_and_recording_is_pcmu(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["this is Jane Doe calling"]) as app:
        chunks = speech_chunks(4.0) + [b"\xff" * 160] * 75  # speech, then silence so the utterance ends
        async with app.client.ws_connect("/media-streams") as ws:
            await ws.send_str(
                start({"token": app.token, "patient_first_name": "Jane", "patient_last_name": "Doe"})
            )
            for i, c in enumerate(chunks, start=1):
                await ws.send_str(media(i, c))
            await ws.send_str(STOP)
            code, reason = await closed(ws)
        assert code == 1000 and reason.endswith(": stream stopped")
        call_id = reason.removeprefix("call ").partition(":")[0]
        store = app.ctx.stores.transcripts
        call = await store.get_call(call_id)
        assert (call.source, call.external_id, call.status) == ("media-streams", CALL_SID, "ended")
        utts = await store.get_utterances(call_id)
        assert utts and "Jane" not in utts[0].text and "Doe" not in utts[0].text  # variables redacted
        info = await store.get_track(call_id, 0)
        assert (info.frames_received, info.frames_sealed, info.frames_lost) == (len(chunks), len(chunks), 0)
        data = await app.ctx.stores.recordings.read_track(call_id, 0)
        header, _ = decode_header(data)
        assert (header.codec, header.sample_rate, header.frame_samples) == ("pcmu", 8000, 160)
        key = app.keys.unwrap(info.wrapped_key, track_key_context(call_id, 0))
        contents = read_recording(data, lambda h: key)
        assert contents.complete and [p for _, p in contents.frames] == chunks  # mu-law sealed as sent
        assert [ts for ts, _ in contents.frames] == [960 * i for i in range(len(chunks))]
        entries = await app.ctx.security.audit.entries(0, 100)
        assert [e["action"] for e in entries if e["action"].startswith(("media-streams", "call."))][:2] == [
            "media-streams.start",
            "call.start",
        ]
        assert "Jane" not in json.dumps(entries)


async def test_silent_stream_ends_by_no_media_timeout(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"], no_media_timeout_s=0.5) as app:
        async with app.client.ws_connect(f"/media-streams?token={app.token}") as ws:
            await ws.send_str(start({}))
            await ws.send_str(media(1, b"\xff" * 160))
            code, reason = await closed(ws)
        assert code == 1008 and reason.endswith(": no media for 0.5 s")
        (call,) = await app.ctx.stores.transcripts.list_calls(ORG)
        assert (call.status, call.end_reason) == ("failed", "no media for 0.5 s")


async def test_lost_and_late_chunks_are_counted(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"]) as app:
        async with app.client.ws_connect(f"/media-streams?token={app.token}") as ws:
            await ws.send_str(start({}))
            order = [1, 3, 2, 5, *range(6, 20), 4, 20]  # 2 reordered; 4 is missing past the window, then late
            for c in order:
                await ws.send_str(media(c, b"\xff" * 160))
            await ws.send_str(STOP)
            _, reason = await closed(ws)
        call_id = reason.removeprefix("call ").partition(":")[0]
        info = await app.ctx.stores.transcripts.get_track(call_id, 0)
        # received and sealed: every chunk but 4; lost: 4 once as missing and once as late
        assert (info.frames_received, info.frames_sealed, info.frames_lost) == (19, 19, 2)


async def test_capacity_is_shared_and_draining_refuses(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"], max_calls=1) as app:
        async with app.client.ws_connect(f"/media-streams?token={app.token}") as ws:
            await ws.send_str(start({}))
            await ws.send_str(media(1, b"\xff" * 160))
            await asyncio.sleep(0.2)
            resp = await app.client.get(f"/media-streams?token={app.token}")
            assert resp.status == 503 and (await resp.text()) == "at capacity (1 calls)\n"
            ready = await app.client.get("/readyz")
            body = await ready.json()
            assert ready.status == 503 and body["reason"] == "at capacity"
            assert (body["media_streams"], body["active_calls"]) == (1, 1)
            whip = await app.client.post(
                "/whip",
                data=b"v=0\r\n",
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {app.token}"},
            )
            assert (
                whip.status == 503 and (await whip.text()) == "at capacity (1 calls)\n"
            )  # WHIP counts it too
            await ws.send_str(STOP)
            await closed(ws)
        drain = asyncio.create_task(app.calls.drain(5))
        await asyncio.sleep(0)
        resp = await app.client.get(f"/media-streams?token={app.token}")
        assert resp.status == 503 and (await resp.text()) == "server is draining\n"
        await drain


async def test_binary_and_bad_format_close_with_reason(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"]) as app:
        async with app.client.ws_connect(f"/media-streams?token={app.token}") as ws:
            await ws.send_str(start({}))
            await ws.send_bytes(b"\x00\x01")
            code, reason = await closed(ws)
        assert code == 1008 and reason.endswith(": binary message: the protocol sends JSON text")
        async with app.client.ws_connect(f"/media-streams?token={app.token}") as ws:
            await ws.send_str(start({}).replace("audio/x-mulaw", "audio/l16"))
            code, reason = await closed(ws)
        assert (code, reason) == (1008, "start: mediaFormat.encoding must be audio/x-mulaw")
        async with app.client.ws_connect("/media-streams") as ws:
            await ws.send_str(start({"token": "wrong-token-wrong-token"}))
            assert await closed(ws) == (1008, "token invalid")
        viewer = app.ctx.security.issuer.issue("v", "v@example.org", ORG, Role.VIEWER, ["otp", "mfa"])
        resp = await app.client.get(f"/media-streams?token={viewer}")
        assert resp.status == 403  # a valid identity without configure_agents
        assert len(await app.ctx.stores.transcripts.list_calls(ORG)) == 1  # the refused streams made no call
        entries = await app.ctx.security.audit.entries(0, 100)
        outcomes = [(e["action"], e["outcome"]) for e in entries if e["action"].startswith("media-streams")]
        assert outcomes[-2:] == [("media-streams.authenticate", "denied"), ("media-streams.start", "denied")]
        assert "wrong-token" not in json.dumps(entries)


def test_track_speech_decodes_mulaw_to_the_same_timeline() -> None:
    """A pcmu track's speech path (payload only, decoded off the loop) gives exactly what the same audio
    gives when handed over as 48 kHz PCM: same utterances, same times, same samples."""
    from media.frames import EncodedFrame
    from media.mulaw import MulawDecoder
    from worker.calls.track import TrackSpeech

    chunks = speech_chunks(4.0) + [b"\xff" * 160] * 75
    dec = MulawDecoder()
    ts = [960 * i for i in range(len(chunks))]
    by_codec = TrackSpeech(codec="pcmu").process(
        [EncodedFrame(payload=c, timestamp=t) for c, t in zip(chunks, ts, strict=True)], True, False
    )
    by_pcm = TrackSpeech().process(
        [EncodedFrame(payload=c, timestamp=t, pcm=dec.decode(c)) for c, t in zip(chunks, ts, strict=True)],
        True,
        False,
    )
    utts = [e for e in by_codec if type(e).__name__ == "Utterance"]
    assert utts and by_codec == by_pcm
    assert 0.0 <= utts[0].start < utts[-1].end <= 4.5


async def test_failed_authentications_and_offers_are_rate_limited(tmp_path: Path) -> None:
    """The admission gate guards the upgrade like `POST /whip`: 401s use up the IP's failure bucket."""
    cfg = AdmissionConfig(auth_failures_per_s=0.001, auth_failure_burst=2, offers_per_s=0.001, offer_burst=5)
    async with open_app(tmp_path, ["x"], admission=cfg) as app:
        statuses = []
        for _ in range(4):
            resp = await app.client.get("/media-streams?token=wrong-token-wrong-token")
            statuses.append(resp.status)
            await resp.release()
        assert statuses == [401, 401, 429, 429]
        entries = await app.ctx.security.audit.entries(0, 100)
        assert (
            len([e for e in entries if e["action"] == "media-streams.authenticate"]) == 2
        )  # 429s cost nothing


async def test_shutdown_ends_active_streams_keeping_what_they_sent(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"]) as app:
        ws = await app.client.ws_connect(f"/media-streams?token={app.token}")
        await ws.send_str(start({}))
        for c in range(1, 11):
            await ws.send_str(media(c, b"\xff" * 160))
        await asyncio.sleep(0.3)
        assert app.client.server.app is not None
        await app.client.server.app.shutdown()  # what the runner's cleanup runs first on SIGTERM
        code, reason = await closed(ws)
        assert (code, reason) == (1001, "server draining")
        (call,) = await app.ctx.stores.transcripts.list_calls(ORG)
        assert (call.status, call.end_reason) == ("ended", "server draining")
        info = await app.ctx.stores.transcripts.get_track(call.call_id, 0)
        assert (info.frames_received, info.frames_sealed, info.frames_lost) == (10, 10, 0)
        await ws.close()


async def test_drain_waits_for_streams_then_ends_them_at_its_deadline(tmp_path: Path) -> None:
    async with open_app(tmp_path, ["x"]) as app:
        ws = await app.client.ws_connect(f"/media-streams?token={app.token}")
        await ws.send_str(start({}))
        await ws.send_str(media(1, b"\xff" * 160))
        await asyncio.sleep(0.3)
        t0 = asyncio.get_running_loop().time()
        drain = asyncio.create_task(app.calls.drain(0.5))
        await asyncio.sleep(0.2)
        assert not drain.done()  # the stream holds the drain open ...
        await ws.send_str(media(2, b"\xff" * 160))  # ... and may still send
        code, reason = await closed(ws)  # ... until the deadline ends it
        await drain
        assert asyncio.get_running_loop().time() - t0 >= 0.5
        assert code == 1001 and reason == "server draining"
        (call,) = await app.ctx.stores.transcripts.list_calls(ORG)
        assert (call.status, call.end_reason) == ("ended", "server draining")
        info = await app.ctx.stores.transcripts.get_track(call.call_id, 0)
        assert (info.frames_received, info.frames_lost) == (2, 0)
        await ws.close()

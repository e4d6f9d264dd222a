"""An admin API on memory stores for tests: real KEK file, audit log and token issuer in tmp_path, a real
Engine with a FakeTranscriber, and an aiohttp test server with the API routes and middleware."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from media.asr import AsrScheduler, FakeTranscriber
from media.fixtures import iter_frames, load_fixture
from media.frames import FRAME_SAMPLES, EncodedFrame
from media.opus import OpusEncoder
from storage.audit_store import AuditLog
from storage.factory import Stores, memory_stores
from storage.keys import LocalKeyFile
from storage.protocols import CallInfo, UtteranceRecord
from tests.support import FIXTURES
from worker.app_context import AppContext
from worker.auth.access import Role
from worker.auth.identity import Authenticator, LocalIssuer
from worker.auth.security import LOCAL_ISSUER, Security
from worker.auth.totp import TotpStore
from worker.calls.engine import Call, Engine, EngineConfig
from worker.http.api.routes import api_routes
from worker.http.auth import auth_middleware
from worker.http.openapi import openapi_spec
from worker.metrics import Metrics

ORG = "org-a"
OTHER_ORG = "org-b"
PHI_LINE = "Call me at 555-123-4567 about the appointment."
REDACTED_LINE = "Call me at [PHONE] about the appointment."
STORED_CALL = "stored-call-1"
ACTIVE_CALL = "active-call-1"
FOREIGN_CALL = "foreign-call-1"


@dataclass(slots=True)
class Api:
    ctx: AppContext
    client: TestClient[web.Request, web.Application]
    issuer: LocalIssuer
    keys: LocalKeyFile
    stores: Stores
    calls: dict[str, Call] = field(default_factory=dict)

    def token(self, role: Role | str, *, mfa: bool = True, org: str = ORG, user: str | None = None) -> str:
        user = user or f"{role}-user"
        amr = ["otp", "mfa"] if mfa else ["local"]
        return self.issuer.issue(user, f"{user}@example.org", org, role, amr)

    def auth(self, role: Role | str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **kw)}"}

    async def audit_tail(self, since: int) -> list[dict[str, Any]]:
        return await self.ctx.security.audit.entries(since, 1000)

    async def last_seq(self) -> int:
        entries = await self.ctx.security.audit.entries(0, 1000)
        while len(entries) == 1000:  # never in these tests; keeps the helper honest
            entries = await self.ctx.security.audit.entries(entries[-1]["seq"], 1000)
        return int(entries[-1]["seq"]) if entries else 0


def opus_frames(seconds: float | None = None) -> list[bytes]:
    """The example fixture as 20 ms Opus packets (optionally only its first `seconds`)."""
    pcm = load_fixture(FIXTURES / "example_call.flac").tracks[0].pcm
    frames = list(iter_frames(pcm))
    if seconds is not None:
        frames = frames[: int(seconds * 50)]
    enc = OpusEncoder()
    return [enc.encode(f) for f in frames]


async def push_frames(call: Call, packets: list[bytes]) -> None:
    track = await call.open_track()
    for i, payload in enumerate(packets):
        await track.push(EncodedFrame(payload=payload, timestamp=i * FRAME_SAMPLES))


async def seed(api: Api, packets: list[bytes]) -> None:
    """A stored (ended) call with a sealed track and two redacted utterances, an active call, and a call of
    another organisation."""
    engine = api.ctx.engine
    call = await engine.start_call(org_id=ORG, source="replay", call_id=STORED_CALL, fixture="example.flac")
    await push_frames(call, packets)
    await call.finish("ended", "fixture complete")
    store = api.stores.transcripts
    for seq, (track, start) in enumerate([(0, 0.5), (0, 3.0)]):
        await store.append_utterance(
            UtteranceRecord(
                call_id=STORED_CALL,
                track=track,
                seq=100 + seq,
                start=start,
                end=start + 1.0,
                text=REDACTED_LINE,
                committed_at="2026-11-27T16:32:56.123Z",
                redactions={"PHONE": 1},
            )
        )
    active = await engine.start_call(org_id=ORG, source="whip", call_id=ACTIVE_CALL)
    api.calls[ACTIVE_CALL] = active
    await store.create_call(
        CallInfo(call_id=FOREIGN_CALL, org_id=OTHER_ORG, source="whip", started_at="2026-11-27T16:00:00.000Z")
    )


@asynccontextmanager
async def open_api(
    tmp_path: Path, *, script: list[str] | None = None, seed_packets: list[bytes] | None = None
) -> AsyncIterator[Api]:
    data, key_dir = tmp_path / "data", tmp_path / "keys"
    keys = LocalKeyFile(key_dir / "kek.json")
    audit = AuditLog.in_data_dir(data, key_path=key_dir / "audit-signing.key")
    issuer = LocalIssuer(key_dir / "issuer.key", issuer=LOCAL_ISSUER, audience="converse-worker")
    totp = TotpStore(data / "users.json", key_provider=keys)
    security = Security(audit, issuer, totp, Authenticator(issuers={LOCAL_ISSUER: issuer}))
    stores = memory_stores()
    sched = AsrScheduler(FakeTranscriber(script or [PHI_LINE]), workers=2)
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
    app = web.Application(middlewares=[auth_middleware(ctx)])
    app.add_routes(api_routes(ctx))
    spec = openapi_spec()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/openapi.json", openapi_json)
    client = TestClient(TestServer(app))
    await client.start_server()
    api = Api(ctx, client, issuer, keys, stores)
    try:
        if seed_packets is not None:
            await seed(api, seed_packets)
        yield api
    finally:
        await client.close()
        for call in engine.active_calls():
            await asyncio.wait_for(call.finish("ended", "test over"), 30)
        await sched.aclose()
        await audit.close()

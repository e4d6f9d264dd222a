"""Fault injection, in process (Engine + fakes, fast): the ASR worker raising or hanging, the disk filling up,
wall-clock jumps, and floods of WHIP offers / failed authentications (worker.http.admission).

What each test proves is in its docstring; the serve-process faults (SIGKILL, vanished client, a real full
tmpfs) are in tests/test_faults_serve.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import worker.calls.engine as engine_mod
from media.asr import AsrScheduler, FakeTranscriber, Transcriber
from media.events import Transcript
from media.fixtures import load_fixture
from media.recording import read_recording
from storage.factory import Stores, memory_stores, open_stores
from storage.file_recordings import LocalRecordingSink
from storage.keys import LocalKeyFile, track_key_context
from storage.memory import MemoryTranscriptStore
from storage.protocols import UtteranceRecord
from tests.support import FIXTURES, cli_env, run_cli
from worker.calls.engine import Engine, EngineConfig
from worker.calls.replay import replay_one
from worker.http.admission import (
    Admission,
    AdmissionConfig,
    LoadGate,
    LoopLagProbe,
    RateLimiter,
    TokenBucket,
    admission_middleware,
)
from worker.metrics import Metrics

LINE = "Tuesday works, thank you."
ENOSPC_REASON = "recording storage failed (ENOSPC: No space left on device)"


class Env:
    """Engine + stores + keys for one test; schedulers are closed at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.keys = LocalKeyFile(tmp / "keys" / "kek.json")
        self.schedulers: list[AsrScheduler] = []
        self.stores: Stores | None = None

    def engine(self, transcriber: Transcriber, stores: Stores, **config: Any) -> Engine:
        sched = AsrScheduler(transcriber, workers=2)
        self.schedulers.append(sched)
        self.stores = stores
        return Engine(
            transcripts=stores.transcripts,
            recordings=stores.recordings,
            keys=self.keys,
            asr=sched,
            metrics=Metrics(),
            config=EngineConfig(**{"flush_interval_s": 0.05, **config}),
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path)
    yield e
    for s in e.schedulers:
        await asyncio.wait_for(s.aclose(), 30)


async def _open(stores: Stores, keys: LocalKeyFile, call_id: str, track: int) -> Any:
    info = await stores.transcripts.get_track(call_id, track)
    raw = await stores.recordings.read_track(call_id, track)
    return info, read_recording(
        raw, lambda h: keys.unwrap(info.wrapped_key, track_key_context(call_id, track))
    )


class Scripted:
    """A `Transcriber` whose calls numbered in `fail_on` run `action` (raise or hang); the others say LINE.
    (FakeTranscriber runs its script under a lock, so one hang there would stall every worker.)"""

    def __init__(self, fail_on: set[int], action: Callable[[], str]) -> None:
        self._fail_on, self._action = fail_on, action
        self._count = 0
        self._lock = threading.Lock()

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        with self._lock:
            n = self._count
            self._count += 1
        text = self._action() if n in self._fail_on else LINE
        return Transcript(text=text, no_speech_prob=0.0)


# -- ASR faults ------------------------------------------------------------------------------------------


async def test_asr_raising_fails_only_that_utterance(env: Env) -> None:
    """The model raises on the first utterance: the call ends normally, that utterance is counted failed
    (metric and summary), the next one is stored with seq 0, and every frame is sealed, in order."""

    def boom() -> str:
        raise RuntimeError("model crashed")

    stores = memory_stores()
    engine = env.engine(Scripted({0}, boom), stores)
    summary = await replay_one(
        engine, load_fixture(FIXTURES / "example_call.flac"), realtime=False, emit=print
    )
    assert summary.status == "ended"
    assert summary.failed_utterances == 1 and summary.utterances >= 1
    assert engine.metrics.utterances_failed.labels("asr")._value.get() == 1
    utts = await stores.transcripts.get_utterances(summary.call_id)
    assert [u.seq for u in utts] == list(range(len(utts))) and all(u.text == LINE for u in utts)
    info, rec = await _open(stores, env.keys, summary.call_id, 0)
    assert rec.complete and len(rec.frames) == summary.frames_received == info.frames_sealed
    assert [ts for ts, _ in rec.frames] == [i * 960 for i in range(len(rec.frames))]


async def test_asr_hang_hits_asr_timeout_and_call_continues(env: Env) -> None:
    """The model hangs on the first utterance: after `asr_timeout_s` that utterance fails, the next one is
    transcribed, the call ends in bounded time with all audio sealed. (The hung thread is released at the
    end: a thread cannot be killed, so a hung model keeps one ASR worker until it returns.)"""
    release = threading.Event()

    def hang() -> str:
        release.wait(30)
        return "never stored"

    stores = memory_stores()
    engine = env.engine(Scripted({0}, hang), stores, asr_timeout_s=0.5)
    t0 = time.monotonic()
    try:
        summary = await asyncio.wait_for(
            replay_one(engine, load_fixture(FIXTURES / "example_call.flac"), realtime=False, emit=print), 20
        )
    finally:
        release.set()
    assert time.monotonic() - t0 < 10
    assert summary.status == "ended" and summary.failed_utterances == 1 and summary.utterances >= 1
    assert engine.metrics.utterances_failed.labels("asr")._value.get() == 1
    texts = [u.text for u in await stores.transcripts.get_utterances(summary.call_id)]
    assert texts and "never stored" not in texts
    _, rec = await _open(stores, env.keys, summary.call_id, 0)
    assert rec.complete and len(rec.frames) == summary.frames_sealed == summary.frames_received


# -- disk full -------------------------------------------------------------------------------------------


class DiskBudget:
    """Makes every LocalRecordingSink write fail with ENOSPC once `free` bytes are used up; the write that
    crosses the limit lands a prefix first, as on a real file system."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, free: int) -> None:
        self.free = free
        self.failures = 0
        original = LocalRecordingSink._write
        budget = self

        def write(
            sink: LocalRecordingSink, data: bytes, sync: bool, sync_dirs: bool, done: list[int]
        ) -> None:
            if len(data) <= budget.free:
                budget.free -= len(data)
                original(sink, data, sync, sync_dirs, done)
                return
            n, budget.free = budget.free, 0
            if n:
                original(sink, data[:n], False, False, done)
            budget.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(LocalRecordingSink, "_write", write)


async def test_disk_full_ends_call_failed_and_keeps_what_was_written(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording volume full after ~20 KB: the call ends `failed` with a one-line reason, leaves the engine,
    the transcript DB says so, frames past the last durable flush are counted lost (received = sealed +
    lost), and what reached the disk exports through the real CLI (an authorised, audited read)."""
    data = env.tmp / "data"
    stores = await open_stores(data, keys=env.keys)
    budget = DiskBudget(monkeypatch, free=20_000)
    try:
        engine = env.engine(FakeTranscriber([LINE]), stores)
        events: list[dict[str, Any]] = []
        with pytest.raises(RuntimeError) as err:
            # In real time, so flushes are small and some land before the volume fills (at full speed the
            # first flush could hold every frame and fail whole: nothing durable, a race, not the feature).
            await replay_one(
                engine, load_fixture(FIXTURES / "example_call.flac"), realtime=True, emit=events.append
            )
        call_id = events[0]["call_id"]
        assert str(err.value) == f"call {call_id}: {ENOSPC_REASON}"
        assert budget.failures >= 1
        assert engine.active_calls() == [] and engine.metrics.active_calls._value.get() == 0
        call = await stores.transcripts.get_call(call_id)
        assert (call.status, call.end_reason) == ("failed", ENOSPC_REASON)
        info = await stores.transcripts.get_track(call_id, 0)
        assert info.frames_received == info.frames_sealed + info.frames_lost
        assert info.frames_sealed > 0 and info.frames_lost > 0
    finally:
        await stores.close()
    env_vars = cli_env(data, env.tmp / "keys" / "kek.json")
    out = env.tmp / "partial.wav"
    res = run_cli(["export", "--call", call_id, "--track", "0", "-o", str(out), "--json"], env_vars)
    exported = json.loads(res.stdout)
    assert exported["complete"] is False and "truncated" in exported["warning"]
    assert exported["frames"] >= info.frames_sealed  # durable frames at least; a partial flush may add some
    assert out.stat().st_size > 44


class FullTranscriptStore(MemoryTranscriptStore):
    async def append_utterance(self, utt: UtteranceRecord) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_transcript_store_full_counts_utterances_failed_audio_kept(env: Env) -> None:
    """The transcript DB refuses writes: each utterance is counted failed (`storage`), nothing half-written,
    and the audio is still sealed in full."""
    base = memory_stores()
    stores = Stores(FullTranscriptStore(), base.recordings)
    engine = env.engine(FakeTranscriber([LINE]), stores)
    summary = await replay_one(
        engine, load_fixture(FIXTURES / "example_call.flac"), realtime=False, emit=print
    )
    assert summary.status == "ended" and summary.utterances == 0 and summary.failed_utterances >= 1
    assert engine.metrics.utterances_failed.labels("storage")._value.get() == summary.failed_utterances
    _, rec = await _open(stores, env.keys, summary.call_id, 0)
    assert rec.complete and len(rec.frames) == summary.frames_received


async def test_partial_write_then_retry_keeps_recording_valid(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC mid-write, then space comes back (retention freed some) and the close retries: the file must
    still be a valid recording."""
    stores = await open_stores(env.tmp / "data", keys=env.keys)
    try:
        engine = env.engine(FakeTranscriber([LINE]), stores, flush_interval_s=3600)
        call = await engine.start_call(source="replay", call_id="partial-write")
        track = await call.open_track()
        from media.frames import EncodedFrame

        budget = DiskBudget(monkeypatch, free=10**9)
        for i in range(100):
            await track.push(EncodedFrame(payload=bytes([i % 251]) * 80, timestamp=i * 960))
        budget.free = 3000  # the next flush lands 3000 bytes, then ENOSPC
        sealer = call._tracks[0].sealer
        assert sealer is not None
        with pytest.raises(OSError):
            await sealer.flush()
        budget.free = 10**9  # space is back: the retry succeeds
        await sealer.close()
        raw = await stores.recordings.read_track("partial-write", 0)
        info = await stores.transcripts.get_track("partial-write", 0)
        rec = read_recording(
            raw, lambda h: env.keys.unwrap(info.wrapped_key, track_key_context("partial-write", 0))
        )
        assert rec.complete and len(rec.frames) == 100
        call._tracks[0].sealer = None  # already closed above
        await call.finish("ended")
    finally:
        await stores.close()


# -- clock jumps -----------------------------------------------------------------------------------------


async def test_wall_clock_jumps_do_not_break_ordering_or_sealing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall clock steps back an hour after the first commit and forward a day later (NTP step, VM
    resume). Sealing and VAD run on audio time and time.monotonic, so the recording is complete and in order
    and utterances keep audio order; `committed_at` is clamped so it never goes backwards on a track."""
    real_now = datetime.now
    real_time = time.time
    offsets = iter([timedelta(0)] * 3 + [timedelta(hours=-1)] * 3 + [timedelta(days=1)] * 3)
    last = [timedelta(days=1)]

    def offset() -> timedelta:
        last[0] = next(offsets, last[0])
        return last[0]

    class JumpyDateTime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real_now(tz) + offset()

    monkeypatch.setattr(engine_mod, "datetime", JumpyDateTime)
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600.0)  # nothing on the media path may use it
    stores = memory_stores()
    engine = env.engine(FakeTranscriber([LINE]), stores)
    fixture = load_fixture(FIXTURES / "call_phi")
    summary = await replay_one(engine, fixture, realtime=False, emit=lambda e: None)
    assert summary.status == "ended" and summary.frames_lost == 0 and summary.utterances >= 4
    utts = await stores.transcripts.get_utterances(summary.call_id)
    stamps = [u.committed_at for u in utts]
    for track in range(2):
        mine = sorted((u for u in utts if u.track == track), key=lambda u: u.seq)
        assert [u.seq for u in mine] == list(range(len(mine)))
        assert [u.start for u in mine] == sorted(u.start for u in mine)
        committed = [u.committed_at for u in mine]
        assert committed == sorted(committed), committed
        _, rec = await _open(stores, env.keys, summary.call_id, track)
        assert rec.complete and len(rec.frames) == summary.frames_sealed // 2
        assert [ts for ts, _ in rec.frames] == [i * 960 for i in range(len(rec.frames))]
    # The jump really happened: some commits carry the +1 day clock.
    assert any(c > utc(real_now(UTC) + timedelta(hours=12)) for c in stamps)


def utc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- admission: token buckets, load gate, floods ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.25) == pytest.approx(0.25)  # half a token refilled, nothing taken
    assert b.take(0.5) == 0.0
    assert b.take(-100.0) == pytest.approx(0.5)  # a clock going backwards refills nothing
    assert b.full(10.0)
    with pytest.raises(ValueError):
        TokenBucket(rate=0.0, burst=1, now=0.0)


def test_rate_limiter_is_per_key_and_bounded() -> None:
    clock = FakeClock()
    lim = RateLimiter(rate=1.0, burst=2, max_keys=100, clock=clock)
    assert lim.take("a") == 0.0 and lim.take("a") == 0.0
    assert lim.take("a") == pytest.approx(1.0)
    assert lim.take("b") == 0.0  # another client is not affected
    assert lim.wait("a") == pytest.approx(1.0) and lim.wait("never-seen") == 0.0
    clock.t += 1.0
    assert lim.take("a") == 0.0
    for i in range(10_000):  # a flood from many addresses cannot grow memory past max_keys
        lim.take(f"10.0.{i // 256}.{i % 256}")
    assert len(lim) == 100


def test_loop_lag_probe_decays() -> None:
    clock = FakeClock()
    probe = LoopLagProbe(0.1, clock=clock)
    probe.record(0.8, clock.t)
    assert probe.lag_s == pytest.approx(0.8)
    clock.t += 1.0
    assert probe.lag_s == pytest.approx(0.4)
    probe.record(0.1, clock.t)
    assert probe.lag_s == pytest.approx(0.4)
    clock.t += 3.0
    assert probe.lag_s == pytest.approx(0.05)


def test_load_gate_thresholds() -> None:
    cfg = AdmissionConfig(max_loop_lag_s=0.5, max_asr_backlog=4, load_retry_after_s=2.5)
    lag, backlog = [0.0], [0]
    gate = LoadGate(cfg, lambda: lag[0], lambda: backlog[0])
    assert gate.check() is None
    backlog[0] = 5
    refusal = gate.check()
    assert refusal is not None and refusal.status == 503 and refusal.retry_after == "3"
    assert refusal.reason == "overloaded: 5 utterances waiting for ASR"
    backlog[0], lag[0] = 0, 0.75
    refusal = gate.check()
    assert refusal is not None and refusal.reason == "overloaded: event loop lag 750 ms"


def test_admission_config_from_env() -> None:
    cfg = AdmissionConfig.from_env(
        {"CONVERSE_ADMISSION_OFFER_BURST": "50", "CONVERSE_ADMISSION_MAX_LOOP_LAG_S": "1.5"}
    )
    assert cfg.offer_burst == 50 and cfg.max_loop_lag_s == 1.5 and cfg.offers_per_s == 5.0
    with pytest.raises(ValueError, match="CONVERSE_ADMISSION_OFFER_BURST"):
        AdmissionConfig.from_env({"CONVERSE_ADMISSION_OFFER_BURST": "many"})


def test_admission_failed_auth_blocks_then_recovers() -> None:
    clock = FakeClock()
    adm = Admission(AdmissionConfig(auth_failures_per_s=0.5, auth_failure_burst=3), clock=clock)
    for _ in range(3):
        assert adm.before("1.2.3.4", offer=False) is None
        adm.after("1.2.3.4", 401)
    refusal = adm.before("1.2.3.4", offer=True)
    assert refusal is not None and (refusal.status, refusal.retry_after) == (429, "2")
    assert adm.before("5.6.7.8", offer=True) is None
    clock.t += 2.0
    assert adm.before("1.2.3.4", offer=False) is None
    assert adm.refused.labels("auth")._value.get() == 1


async def test_middleware_refuses_before_the_handler() -> None:
    """A tiny app: the handler counts calls, so refused requests are shown to cost nothing behind it."""
    clock = FakeClock()
    lag = [0.0]
    adm = Admission(
        AdmissionConfig(offers_per_s=1.0, offer_burst=5, auth_failure_burst=2),
        clock=clock,
        lag=lambda: lag[0],
    )
    handled = {"n": 0}

    async def whip(request: web.Request) -> web.Response:
        handled["n"] += 1
        if request.headers.get("Authorization") != "Bearer good":
            return web.Response(status=401, text="invalid token\n")
        return web.Response(status=400, text="malformed SDP\n")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[admission_middleware(adm)])
    app.add_routes([web.post("/whip", whip), web.get("/healthz", health)])
    async with TestClient(TestServer(app)) as client:
        statuses = []
        for _ in range(20):
            resp = await client.post("/whip", data=b"v=0", headers={"Authorization": "Bearer good"})
            statuses.append(resp.status)
        assert statuses == [400] * 5 + [429] * 15
        assert handled["n"] == 5
        resp = await client.post("/whip", data=b"v=0")
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        clock.t += 10.0
        lag[0] = 2.0
        resp = await client.post("/whip", data=b"v=0", headers={"Authorization": "Bearer good"})
        assert resp.status == 503 and (await resp.text()).startswith("overloaded: event loop lag")
        assert (await client.get("/healthz")).status == 200  # unguarded paths pass


# -- a flood against the real app (build_app: admission wired in front of WHIP and the admin API) ---------


async def test_flood_of_offers_and_bad_tokens_on_real_app(tmp_path: Path) -> None:
    """200 garbage offers with a valid token and 200 with a wrong token against `build_app`: after the
    bursts every answer is 429 with Retry-After, the authenticator and SDP parser are not reached, the audit
    log does not grow with the flood, and the whole flood costs well under a few seconds."""
    from storage.audit_store import AuditLog
    from tests.api_support import ORG
    from worker.app_context import AppContext
    from worker.auth.access import Role
    from worker.auth.identity import Authenticator, LocalIssuer
    from worker.auth.security import LOCAL_ISSUER, Security
    from worker.auth.totp import TotpStore
    from worker.http.app import build_app
    from worker.webrtc.peer import Calls, WebRtcConfig

    data, key_dir = tmp_path / "data", tmp_path / "keys"
    keys = LocalKeyFile(key_dir / "kek.json")
    audit = AuditLog.in_data_dir(data, key_path=key_dir / "audit-signing.key")
    issuer = LocalIssuer(key_dir / "issuer.key", issuer=LOCAL_ISSUER, audience="converse-worker")
    security = Security(
        audit,
        issuer,
        TotpStore(data / "users.json", key_provider=keys),
        Authenticator(issuers={LOCAL_ISSUER: issuer}),
    )
    stores = memory_stores()
    sched = AsrScheduler(FakeTranscriber([LINE]), workers=1)
    metrics = Metrics()
    engine = Engine(
        transcripts=stores.transcripts, recordings=stores.recordings, keys=keys, asr=sched, metrics=metrics
    )
    ctx = AppContext(org_id=ORG, stores=stores, keys=keys, security=security, engine=engine, metrics=metrics)
    token = issuer.issue("admin-user", "admin@example.org", ORG, Role.ADMIN, ["otp", "mfa"])
    cfg = AdmissionConfig(offers_per_s=0.001, offer_burst=10, auth_failures_per_s=0.001, auth_failure_burst=5)
    try:
        async with Calls(engine, WebRtcConfig(loopback_only=True)) as calls:
            app = build_app(ctx, calls, cfg)
            async with TestClient(TestServer(app)) as client:
                entries_before = len(await audit.entries(0, 10_000))
                t0 = time.perf_counter()
                good: list[int] = []
                for _ in range(200):
                    resp = await client.post(
                        "/whip",
                        data=b"v=0\r\nnot sdp",
                        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
                    )
                    good.append(resp.status)
                    await resp.release()
                bad: list[int] = []
                for _ in range(200):
                    resp = await client.get("/v1/calls", headers={"Authorization": "Bearer wrong-token"})
                    bad.append(resp.status)
                    if resp.status == 429:
                        assert int(resp.headers["Retry-After"]) >= 1
                    await resp.release()
                elapsed = time.perf_counter() - t0
                resp = await client.get("/metrics")
                text = await resp.text()
                entries_after = len(await audit.entries(0, 10_000))
        assert good == [400] * 10 + [429] * 190
        assert bad == [401] * 5 + [429] * 195
        assert elapsed < 10, f"flood of 400 requests took {elapsed:.1f}s"
        # Each admitted request leaves its audit entry; the 385 refused ones leave none.
        assert entries_after - entries_before <= 15 + 5
        assert 'converse_admission_refused_total{reason="offers"} 190.0' in text
        assert 'converse_admission_refused_total{reason="auth"} 195.0' in text
    finally:
        await sched.aclose()
        await audit.close()

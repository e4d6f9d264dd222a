"""Admission control for the HTTP edge: load-based refusal of new calls and per-client rate limits.

Three checks, all O(1) and taken before any offer is parsed or any call state exists:

- **Load** (`LoadGate`): `POST /whip` is refused with 503 + `Retry-After` while the event loop lags
  (measured by `LoopLagProbe`, a task that sleeps a fixed interval and records the overshoot) or while the
  ASR backlog (finals queued for the shared scheduler) is past a threshold. Like the load threshold of the
  agent frameworks: a pod that cannot keep up says so, and the load balancer sends the call elsewhere.
- **Offers** (`RateLimiter`): a token bucket per client IP on `POST /whip` (429 + `Retry-After`).
- **Failed authentications** (`RateLimiter`): every 401 from `/whip` or `/v1/` takes a token from the
  client IP's bucket; with the bucket empty, that IP's requests to those paths get 429 before
  authentication runs at all, so guessing tokens costs the worker next to nothing.

The buckets are pure (`now` is passed in or comes from an injected clock) and their number is bounded
(least recently used IPs are forgotten first), so a flood from many addresses cannot grow memory.
The client IP is the TCP peer (`request.remote`): behind a proxy that hides it, the proxy's address is
shared by all its clients, so size the buckets for that or give the worker the real peer (an L4 balancer).

Settings come from `AdmissionConfig`; `AdmissionConfig.from_env` reads `CONVERSE_ADMISSION_*` overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, fields

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    max_loop_lag_s: float = 1.0  # refuse new calls while the loop runs this late (the TTF budget is 1.5 s)
    max_asr_backlog: int = 32  # ... or while this many finals wait for an ASR worker
    load_retry_after_s: float = 5.0
    offers_per_s: float = 5.0  # per client IP: sustained WHIP offers ...
    offer_burst: int = 20  # ... and the burst allowed on top
    auth_failures_per_s: float = 0.2  # per client IP: one failed authentication every 5 s ...
    auth_failure_burst: int = 10  # ... after a burst of 10
    max_clients: int = 10_000  # buckets kept (least recently used forgotten first)
    lag_probe_interval_s: float = 0.1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdmissionConfig:
        """Defaults, overridden by `CONVERSE_ADMISSION_<FIELD>` (e.g. CONVERSE_ADMISSION_OFFER_BURST=50)."""
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get(f"CONVERSE_ADMISSION_{f.name.upper()}")
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
            except ValueError:
                raise ValueError(f"CONVERSE_ADMISSION_{f.name.upper()} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]  # keys are this dataclass's own field names


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second. Pure: the caller passes `now` (seconds, monotonic)."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:  # a clock that goes backwards refills nothing
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be (nothing taken)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0 if one is now), without taking it."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.burst


class RateLimiter:
    """One `TokenBucket` per key (client IP), at most `max_keys` of them (LRU eviction)."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate")

    def __init__(
        self, rate: float, burst: int, *, max_keys: int = 10_000, clock: Clock = time.monotonic
    ) -> None:
        TokenBucket(rate, burst, 0.0)  # validates the settings once, here
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if allowed, else seconds to wait (a Retry-After)."""
        now = self._clock()
        return self._bucket(key, now).take(now)

    def wait(self, key: str) -> float:
        """Seconds `key` must wait before its next token (0.0 now); takes nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(self._clock())


class LoopLagProbe:
    """Measures event-loop lag: a task sleeps `interval` and records how late it woke.

    `lag_s` is the worst recent lag, decaying by half every second, so one slow tick does not shut the door
    for long but a loop that stays late keeps it shut."""

    __slots__ = ("_at", "_clock", "_lag", "_task", "interval")

    def __init__(self, interval: float = 0.1, *, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lag = 0.0
        self._at = clock()
        self._task: asyncio.Task[None] | None = None

    def record(self, lag: float, now: float) -> None:
        self._lag = max(lag, self.lag_at(now))
        self._at = now

    def lag_at(self, now: float) -> float:
        return float(self._lag * 0.5 ** max(0.0, now - self._at))

    @property
    def lag_s(self) -> float:
        return self.lag_at(self._clock())

    async def _run(self) -> None:
        while True:
            start = self._clock()
            await asyncio.sleep(self.interval)
            now = self._clock()
            self.record(max(0.0, now - start - self.interval), now)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 429 or 503
    reason: str  # one line, no ids of other clients
    retry_after_s: float

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class LoadGate:
    """Refuses new calls while the loop lags or the ASR backlog is past its threshold."""

    __slots__ = ("asr_backlog", "config", "lag")

    def __init__(
        self, config: AdmissionConfig, lag: Callable[[], float], asr_backlog: Callable[[], int]
    ) -> None:
        self.config = config
        self.lag = lag
        self.asr_backlog = asr_backlog

    def check(self) -> Refusal | None:
        cfg = self.config
        lag = self.lag()
        if lag > cfg.max_loop_lag_s:
            return Refusal(503, f"overloaded: event loop lag {lag * 1000:.0f} ms", cfg.load_retry_after_s)
        backlog = self.asr_backlog()
        if backlog > cfg.max_asr_backlog:
            return Refusal(503, f"overloaded: {backlog} utterances waiting for ASR", cfg.load_retry_after_s)
        return None


class Admission:
    """The three checks together, as the middleware uses them."""

    def __init__(
        self,
        config: AdmissionConfig | None = None,
        *,
        asr_backlog: Callable[[], int] = lambda: 0,
        lag: Callable[[], float] | None = None,
        clock: Clock = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = cfg = config or AdmissionConfig()
        self.probe = LoopLagProbe(cfg.lag_probe_interval_s, clock=clock)
        self.load = LoadGate(cfg, lag or (lambda: self.probe.lag_s), asr_backlog)
        self.offers = RateLimiter(cfg.offers_per_s, cfg.offer_burst, max_keys=cfg.max_clients, clock=clock)
        self.auth_failures = RateLimiter(
            cfg.auth_failures_per_s, cfg.auth_failure_burst, max_keys=cfg.max_clients, clock=clock
        )
        # Refusals are counted, not logged: a flood must not become a flood of log lines.
        self.refused = Counter(
            "converse_admission_refused",
            "Requests refused before any work: offers/auth (429), load (503)",
            ["reason"],
            registry=registry or CollectorRegistry(),
        )

    def before(self, ip: str, *, offer: bool) -> Refusal | None:
        """Checks that run before the handler (`offer`: a POST /whip)."""
        wait = self.auth_failures.wait(ip)
        if wait > 0:
            self.refused.labels("auth").inc()
            return Refusal(429, "too many failed authentications", wait)
        if not offer:
            return None
        wait = self.offers.take(ip)
        if wait > 0:
            self.refused.labels("offers").inc()
            return Refusal(429, "too many offers", wait)
        refusal = self.load.check()
        if refusal is not None:
            self.refused.labels("load").inc()
        return refusal

    def after(self, ip: str, status: int) -> None:
        if status == 401:
            self.auth_failures.take(ip)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: the lag probe runs while the app does."""
        self.probe.start()
        try:
            yield
        finally:
            await self.probe.stop()


def gauge_value(registry: CollectorRegistry, name: str) -> Callable[[], int]:
    """A reader of a gauge in `registry` (e.g. `converse_asr_queue_depth`), for `asr_backlog`."""
    return lambda: int(registry.get_sample_value(name) or 0)


def _guarded(path: str) -> bool:
    return path in ("/whip", "/media-streams") or path.startswith(("/whip/", "/v1/"))


def admission_middleware(admission: Admission) -> Middleware:
    """Put first in the middleware list, so it also sees the admin API's 401s."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not _guarded(request.path):
            return await handler(request)
        ip = request.remote or "unknown"
        # a new call: a WHIP offer or a media stream (telephony) upgrade
        offer = (request.method, request.path) in (("POST", "/whip"), ("GET", "/media-streams"))
        refusal = admission.before(ip, offer=offer)
        if refusal is not None:
            return web.Response(
                status=refusal.status,
                text=refusal.reason + "\n",
                content_type="text/plain",
                headers={"Retry-After": refusal.retry_after},
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            admission.after(ip, exc.status)
            raise
        admission.after(ip, response.status)
        return response

    return middleware

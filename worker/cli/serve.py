"""`serve`: take WebRTC calls over WHIP until SIGTERM, then drain and exit after every record is flushed.

Beside the calls, `serve` runs the pod's housekeeping: the retention sweeper (`run_retention` every
`retention_interval_seconds`, first after a random fraction of the interval so pods started together do not
sweep in lockstep; each deletion audited; several pods sweeping at once each delete a disjoint share) and
periodic audit checkpoints (`maybe_checkpoint`, decided under a lock shared by all pods; a last one on
shutdown). A failure (storage outage) is logged and retried at the next tick; it never stops the pod.
/readyz answers 503 "storage degraded" while writes are being spooled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web
from aiortc import RTCIceServer

from media.asr_sched import AsrScheduler
from storage.retention import MAX_CALL, run_retention
from worker.app_context import AppContext
from worker.auth.security import Security, open_security
from worker.calls.asr_setup import build_asr
from worker.calls.drain import (
    ASR_RESERVE_S,
    CALLS_RESERVE_S,
    CHECKPOINT_RESERVE_S,
    ENGINE_RESERVE_S,
    EXIT_GRACE_S,
    TEARDOWN_RESERVE_S,
    DrainBudget,
)
from worker.calls.engine import Engine, EngineConfig, utc_now
from worker.config import http_settings, kek_path
from worker.http.app import build_app
from worker.metrics import Metrics
from worker.runtime import Runtime, open_runtime
from worker.webrtc.peer import Calls, WebRtcConfig

log = structlog.get_logger("worker.serve")

CHECKPOINT_TICK_S = 15.0  # how often the pod asks whether an audit checkpoint is due
CHECKPOINT_EVERY_N = 100  # ... it is due after this many entries
CHECKPOINT_EVERY_S = 60.0  # ... or this many seconds with entries pending
FINAL_CHECKPOINT_TIMEOUT_S = 15.0  # the checkpoint on shutdown gives up after this long (and at the budget)
UNENDED_TICK_S = 15.0  # how often call ends that could not be stored are retried
RESTARTED_REASON = "worker restarted"  # a pod's own calls left active by a kill, marked on its restart
LOST_REASON = "worker lost"  # calls older than any call can run, their pod gone (another pod marks them)
LOST_MARGIN = timedelta(minutes=10)  # past max-call-seconds, before a call counts as lost


def _flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def speech_batch_seconds(value: str) -> float:
    seconds = float(value)
    if not 0.0 <= seconds <= 1.0:  # past a second the live view and time to final suffer for nothing
        raise ValueError(f"speech-batch-seconds must be between 0 and 1, not {value}")
    return seconds


def max_call_seconds(value: str) -> float:
    seconds = float(value)
    limit = MAX_CALL.total_seconds()  # retention treats an unended call twice this old as abandoned
    if not 1.0 <= seconds <= limit:
        raise ValueError(f"max-call-seconds must be between 1 and {limit:g}, not {value}")
    return seconds


def webrtc_config(args: argparse.Namespace) -> WebRtcConfig:
    ports = None
    if args.udp_ports:
        lo, _, hi = args.udp_ports.partition("-")
        ports = (int(lo), int(hi or lo))
    ice = tuple(RTCIceServer(urls=u.strip()) for u in (args.ice_servers or "").split(",") if u.strip())
    return WebRtcConfig(
        ice_servers=ice,
        udp_port_range=ports,
        loopback_only=_flag(args.loopback_only),
        max_calls=int(args.max_calls),
        no_media_timeout_s=float(args.no_media_seconds),
        max_call_s=max_call_seconds(args.max_call_seconds),
    )


async def sweep_once(rt: Runtime, sec: Security, now: datetime | None = None) -> int:
    """One retention sweep, audited through the pod's audit log; returns the number of calls deleted."""
    report = await run_retention(
        rt.stores.transcripts, rt.stores.recordings, now or datetime.now(UTC), audit=sec.audit.record_system
    )
    if report.deleted_calls or report.failed:
        details = {"deleted": len(report.deleted_calls), "failed": len(report.failed), "by": "sweeper"}
        await sec.audit.record_system("retention.run", "retention", details)
        log.info("retention_swept", deleted=len(report.deleted_calls), failed=len(report.failed))
    return len(report.deleted_calls)


async def retention_sweeper(rt: Runtime, sec: Security, interval_s: float) -> None:
    """Run `sweep_once` every `interval_s` seconds until cancelled; failures are logged and retried."""
    await asyncio.sleep(random.uniform(0.0, min(interval_s, 60.0)))
    while True:
        try:
            await sweep_once(rt, sec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage or a bug: the next tick retries; messages carry ids only
            log.warning("retention_sweep_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)


async def audit_checkpointer(sec: Security, tick_s: float = CHECKPOINT_TICK_S) -> None:
    """Ask every `tick_s` seconds whether a signed audit checkpoint is due (any pod may write it)."""
    while True:
        await asyncio.sleep(tick_s)
        try:
            await sec.audit.maybe_checkpoint(every_n=CHECKPOINT_EVERY_N, every_s=CHECKPOINT_EVERY_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("audit_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")


def readiness(rt: Runtime, asr: AsrScheduler | None = None) -> tuple[bool, str]:
    if rt.stores.degraded:
        return False, "storage degraded: spooling writes until the database or object store is back"
    if asr is not None and asr.exhausted:
        return False, f"asr degraded: all {asr.workers} workers stuck in model calls"
    return True, "ok"


async def unended_retrier(engine: Engine, tick_s: float = UNENDED_TICK_S) -> None:
    """Store call ends that failed (full disk, locked database) once the store takes writes again."""
    while True:
        await asyncio.sleep(tick_s)
        if engine.unended:
            await engine.retry_unended()


def pod_id(args: argparse.Namespace) -> str:
    value = str(getattr(args, "pod_id", None) or socket.gethostname()).strip()
    if not value or len(value) > 253 or not value.isprintable():
        raise ValueError("pod-id must be 1 to 253 printable characters")
    return value


async def fail_stale_calls(
    rt: Runtime, sec: Security, pod: str | None, reason: str, started_before: datetime | None = None
) -> list[str]:
    """Mark calls left `active` failed: this pod's (on start: it cannot have any), or any pod's started
    before `started_before`, each with its `call.end` audit entry (the pod that ran it died before writing
    one). A store down is logged; the next start or tick tries again."""
    try:
        marked = await rt.stores.transcripts.fail_active_calls(
            utc_now(), reason, pod_id=pod, started_before=started_before
        )
    except Exception as exc:
        log.warning("stale_calls_failed", error=f"{type(exc).__name__}: {exc}")
        return []
    for call_id in marked:
        log.warning("stale_call_marked_failed", call_id=call_id, reason=reason)
        try:
            await sec.audit.record_system(
                "call.end", f"call/{call_id}", {"status": "failed", "reason": reason}
            )
        except Exception as exc:
            log.error("audit_call_end_failed", call_id=call_id, error=type(exc).__name__)
    return marked


async def lost_call_sweeper(rt: Runtime, sec: Security, max_call_s: float, interval_s: float) -> None:
    """Any pod marks calls failed that are older than max-call-seconds + LOST_MARGIN and still active:
    every call is ended by then, so their pod is gone (killed, node lost) and will not come back."""
    while True:
        await asyncio.sleep(interval_s)
        cutoff = datetime.now(UTC) - timedelta(seconds=max_call_s) - LOST_MARGIN
        await fail_stale_calls(rt, sec, None, LOST_REASON, started_before=cutoff)


def _exit_watchdog(at: float) -> None:
    """Exit by force at `at` (monotonic) if the process is still alive: every wait after SIGTERM is
    bounded, but a thread stuck in native code (a hung model, a locked database) can still hold up exit."""

    def watch() -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        log.error("exit_forced", reason="a thread still running past the drain budget")
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch, name="exit-watchdog", daemon=True).start()


async def _stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(args: argparse.Namespace) -> int:
    budget: DrainBudget | None = None  # set on SIGTERM: every wait from then on is cut to it

    def left(reserve: float, cap: float | None = None) -> float | None:
        if budget is None:
            return cap
        bounded = budget.left(time.monotonic(), reserve)
        return bounded if cap is None else min(cap, bounded)

    host, port = args.http_host, int(args.http_port)
    wcfg = webrtc_config(args)
    http = http_settings(args)  # also declares --variable-names
    batch_s = speech_batch_seconds(args.speech_batch_seconds)
    pod = pod_id(args)
    async with open_runtime(args, close_timeout=lambda: left(0.0)) as rt:
        sec = open_security(
            Path(args.data_dir),
            kek_path(args.kek_file),
            api_token=args.api_token or None,
            org_id=args.org_id,
            database_url=args.database_url or None,
            object_store_url=args.object_store_url or None,
        )
        await sec.open()
        await fail_stale_calls(rt, sec, pod, RESTARTED_REASON)
        metrics = Metrics()
        metrics.spooled_bytes.set_function(lambda: float(rt.stores.spooled_bytes))
        metrics.spool_backlog_bytes.set_function(lambda: float(rt.stores.spool_backlog_bytes))
        metrics.spool_refused_writes.set_function(lambda: float(rt.stores.spool_refused_writes))
        housekeeping: list[asyncio.Task[None]] = [asyncio.create_task(audit_checkpointer(sec))]
        interval = float(args.retention_interval_seconds or 0)
        if interval > 0:
            housekeeping.append(asyncio.create_task(retention_sweeper(rt, sec, interval)))
            housekeeping.append(
                asyncio.create_task(lost_call_sweeper(rt, sec, wcfg.max_call_s, min(interval, 600)))
            )
        try:
            asr_close = lambda: left(ASR_RESERVE_S)  # noqa: E731 - read at exit, after the budget is set
            async with build_asr(args, on_model=metrics.set_asr_model, close_timeout=asr_close) as asr:
                metrics.asr_hung.set_function(lambda: float(asr.hung()))
                engine = Engine(
                    transcripts=rt.stores.transcripts,
                    recordings=rt.stores.recordings,
                    keys=rt.keys,
                    asr=asr,
                    metrics=metrics,
                    config=EngineConfig(
                        org_id=args.org_id,
                        pod_id=pod,
                        partials=_flag(args.partials),
                        batch_window_s=batch_s,
                    ),
                )
                async with Calls(engine, wcfg, registry=metrics.registry) as calls:
                    ctx = AppContext(
                        org_id=args.org_id,
                        stores=rt.stores,
                        keys=rt.keys,
                        security=sec,
                        engine=engine,
                        metrics=metrics,
                        readiness=lambda: readiness(rt, asr),
                    )
                    engine.on_call_ended.append(ctx.escalations.forget)
                    housekeeping.append(asyncio.create_task(unended_retrier(engine)))
                    app = build_app(ctx, calls, http=http)
                    runner = web.AppRunner(app, handle_signals=False, access_log=None)
                    await runner.setup()
                    try:
                        site = web.TCPSite(runner, host, port)
                        await site.start()
                        bound = runner.addresses[0][1] if runner.addresses else port
                        base = f"http://{host}:{bound}"
                        print(
                            f"converse-worker serving on {base} (demo: {base}/demo)",
                            file=sys.stderr,
                            flush=True,
                        )
                        log.info("serving", url=base, org_id=args.org_id)
                        stop = asyncio.Event()
                        loop = asyncio.get_running_loop()
                        for sig in (signal.SIGTERM, signal.SIGINT):
                            loop.add_signal_handler(sig, stop.set)
                        await stop.wait()
                        deadline = float(args.drain_seconds)
                        budget = DrainBudget(time.monotonic(), deadline)
                        _exit_watchdog(budget.done_at + EXIT_GRACE_S)
                        engine.set_deadline(budget.at(ENGINE_RESERVE_S))
                        log.info("draining", active_calls=len(calls), deadline_s=deadline)
                        await calls.drain(
                            deadline,
                            teardown_by=budget.at(TEARDOWN_RESERVE_S),
                            finish_by=budget.at(CALLS_RESERVE_S),
                        )
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(left(ASR_RESERVE_S)):
                                await engine.retry_unended()
                    finally:
                        try:
                            async with asyncio.timeout(left(ASR_RESERVE_S)):
                                await runner.cleanup()
                        except TimeoutError:
                            log.warning("http_cleanup_timeout")
        finally:
            await _stop_tasks(housekeeping)
            try:  # sign what this pod wrote since the last checkpoint
                async with asyncio.timeout(left(CHECKPOINT_RESERVE_S, FINAL_CHECKPOINT_TIMEOUT_S)):
                    await sec.audit.maybe_checkpoint(every_n=1, every_s=0.0)
            except Exception as exc:  # TimeoutError included: a store down at exit must not hold it up
                log.warning("audit_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
            try:
                async with asyncio.timeout(left(CHECKPOINT_RESERVE_S)):
                    await sec.close()
            except TimeoutError:
                log.warning("security_close_timeout")
    log.info("stopped")
    return 0

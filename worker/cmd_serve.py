"""`serve`: take WebRTC calls over WHIP until SIGTERM, then drain and exit after every record is flushed."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog
from aiohttp import web
from aiortc import RTCIceServer

from worker.app_context import AppContext
from worker.asr_setup import build_asr
from worker.config import kek_path
from worker.engine import Engine, EngineConfig
from worker.http_app import build_app
from worker.metrics import Metrics
from worker.runtime import open_runtime
from worker.security import open_security
from worker.webrtc import Calls, WebRtcConfig

log = structlog.get_logger("worker.serve")


def _flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


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
        max_call_s=float(args.max_call_seconds),
    )


async def run(args: argparse.Namespace) -> int:
    host, port = args.http_host, int(args.http_port)
    wcfg = webrtc_config(args)
    async with open_runtime(args) as rt:
        sec = open_security(
            Path(args.data_dir), kek_path(args.kek_file), api_token=args.api_token or None, org_id=args.org_id
        )
        metrics = Metrics()
        try:
            async with build_asr(args) as asr:
                engine = Engine(
                    transcripts=rt.stores.transcripts,
                    recordings=rt.stores.recordings,
                    keys=rt.keys,
                    asr=asr,
                    metrics=metrics,
                    config=EngineConfig(org_id=args.org_id, partials=_flag(args.partials)),
                )
                async with Calls(engine, wcfg) as calls:
                    ctx = AppContext(
                        org_id=args.org_id,
                        stores=rt.stores,
                        keys=rt.keys,
                        security=sec,
                        engine=engine,
                        metrics=metrics,
                    )
                    engine.on_call_ended.append(ctx.escalations.forget)
                    app = build_app(ctx, calls)
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
                        log.info("draining", active_calls=len(calls), deadline_s=deadline)
                        await calls.drain(deadline)
                    finally:
                        await runner.cleanup()
        finally:
            await sec.close()
    log.info("stopped")
    return 0

"""`call URL FIXTURE`: send a fixture to a running worker over WHIP in real time (QA, end-to-end tests)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from media.fixtures import FixtureError, load_fixture
from media.sframe import SFrameError, suite_params
from media.sframe_session import CounterStore, SFrameSender
from storage.counters import FileCounterStore
from worker.cli.call_client import FrameProtector, WhipClientError, run_call, whip_endpoint
from worker.cli.errors import CommandError
from worker.webrtc.e2ee import MAX_KEY_BYTES, MIN_KEY_BYTES
from worker.webrtc.whip import VARIABLES_HEADER

SFRAME_KEY_ENV = "CONVERSE_SFRAME_KEY"  # keeps the key off the command line (and out of `ps`)
COUNTER_DIR_ENV = "CONVERSE_SFRAME_COUNTER_DIR"


def counter_dir(flag: str | None) -> Path:
    """Where `call` keeps its SFrame counter marks: `--counter-dir`, else $CONVERSE_SFRAME_COUNTER_DIR,
    else `<CONVERSE_DATA_DIR>/sframe-counters`, else `~/.local/state/converse-worker/sframe-counters`."""
    chosen = flag or os.environ.get(COUNTER_DIR_ENV)
    if chosen:
        return Path(chosen)
    data_dir = os.environ.get("CONVERSE_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "sframe-counters"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "converse-worker" / "sframe-counters"


class DurableFrameProtector(FrameProtector):
    """A `FrameProtector` whose CTRs continue across runs: each (key, KID) keeps its high-water mark in a
    `FileCounterStore` (a 0600 file named by an HMAC of the key, never the key), reserved before use, so the
    same `--sframe-key` never reuses a (key, KID, CTR) however often `call` runs, crashes included."""

    def __init__(self, suite: int, key: bytes, kid: int, *, counters: CounterStore) -> None:
        self._counters = counters
        super().__init__(suite, key, kid)

    def _new_sender(self, kid: int, key: bytes) -> SFrameSender:
        return SFrameSender(self.suite, key, kid, counter_store=self._counters)


def sframe_protector(
    key_text: str | None, kid: int, suite: int, counters: CounterStore | None = None
) -> FrameProtector | None:
    """`--sframe-key` (base64url, or $CONVERSE_SFRAME_KEY), `--kid`, `--suite` -> a protector (its CTRs
    persisted in `counters`), or None. Error messages never quote the key."""
    if not key_text:
        return None
    try:
        suite_params(suite)
    except SFrameError:
        raise CommandError(f"--suite: unsupported SFrame suite {suite} (1-5)") from None
    if not 0 <= kid < 2**64:
        raise CommandError("--kid must be 0..2^64-1")
    text = key_text.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        raise CommandError("--sframe-key is not base64url") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise CommandError(f"--sframe-key must decode to {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes")
    if counters is None:
        return FrameProtector(suite, key, kid)
    return DurableFrameProtector(suite, key, kid, counters=counters)


async def _transcript(url: str, call_id: str, token: str) -> list[dict[str, Any]] | None:
    """The stored transcript, if this token may read it (owner/admin with MFA); otherwise None."""
    import aiohttp

    base = whip_endpoint(url).rsplit("/whip", 1)[0]
    async with aiohttp.ClientSession() as http:
        for _ in range(20):  # finals of the last utterance may still be committing
            async with http.get(
                f"{base}/v1/calls/{call_id}/transcript", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                if resp.status != 200:
                    return None
                body = await resp.json()
            call_status = body.get("status") if isinstance(body, dict) else None
            if call_status != "active":
                utts = body.get("utterances", body) if isinstance(body, dict) else body
                return list(utts)
            await asyncio.sleep(0.25)
    return None


def _variables_header(variables: Mapping[str, str]) -> dict[str, str] | None:
    """The fixture's runtime PHI variables travel to the worker for redaction (never in the URL)."""
    if not variables:
        return None
    raw = json.dumps(dict(variables), ensure_ascii=False).encode()
    return {VARIABLES_HEADER: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


async def run(args: argparse.Namespace) -> int:
    if args.media_streams:  # a telephony provider's Media Streams WebSocket instead of WHIP
        from worker.cli.media_streams_client import run as stream

        return await stream(args)
    if args.fixture is None:
        raise CommandError("call: a FIXTURE is required")
    token = args.token or os.environ.get("CONVERSE_API_TOKEN") or ""
    if not token:
        raise CommandError("a bearer token is required (--token or CONVERSE_API_TOKEN)")
    try:
        fixture = await asyncio.to_thread(load_fixture, args.fixture)
    except FixtureError as exc:
        raise CommandError(str(exc)) from None
    key_text = args.sframe_key or os.environ.get(SFRAME_KEY_ENV)
    chosen = getattr(args, "counter_dir", None)
    counters = FileCounterStore(counter_dir(chosen)) if key_text else None
    protector = sframe_protector(key_text, int(args.kid), int(args.suite), counters)
    loopback = os.environ.get("CONVERSE_LOOPBACK_ONLY", "").lower() in ("1", "true", "yes")
    try:
        result = await run_call(
            args.url,
            [t.pcm for t in fixture.tracks],
            token,
            True,
            tail_s=args.tail,
            loopback_only=loopback,
            sframe=protector,
            headers=_variables_header(fixture.variables),
        )
    except WhipClientError as exc:
        raise CommandError(str(exc)) from None
    result["fixture"] = fixture.name
    if protector is not None:
        result["sframe"] = {"suite": protector.suite, "kid": protector.kid, "frames": protector.protected}
    utts = await _transcript(args.url, result["call_id"], token)
    if utts is not None:
        result["utterances"] = utts
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        server = result.get("server") or {}
        print(
            f"call {result['call_id']}: sent {sum(result['frames_sent'])} frames on "
            f"{len(result['frames_sent'])} track(s); worker sealed {server.get('frames_sealed')} "
            f"and lost {server.get('frames_lost')}"
        )
        for u in utts or []:
            print(f"[t{u.get('track')} {u.get('start'):7.2f}-{u.get('end'):7.2f}] {u.get('text')}")
    if server_failed(result):
        print(f"error: call ended with status {result['server'].get('status')}", file=sys.stderr)
        return 1
    return 0


def server_failed(result: dict[str, Any]) -> bool:
    server = result.get("server") or {}
    return isinstance(server, dict) and server.get("status") == "failed"

"""`GET /media-streams`: phone calls over the Media Streams WebSocket protocol (Twilio's), same pipeline.

A telephony provider opens `ws://HOST:PORT/media-streams?token=TOKEN` (or puts the token in the stream's
`customParameters.token`) and sends `connected`, `start`, `media`..., `stop` (`media.media_streams` parses
them). The token is checked exactly like a WHIP bearer token: the identity's authenticator, then the
CONFIGURE_AGENTS permission; every attempt leaves an audit entry (`media-streams.authenticate` denied,
anonymous with the peer IP; `media-streams.start` allowed/denied), and a started call `call.start` (its
end is `call.end`, written for every call by the app's engine hook). A token in the URL that fails is
answered 401 before the upgrade; one in `customParameters` (known only after `start`) closes the socket
with 1008 and the reason. A malformed stream is closed with 1008 and a one-line reason naming the message
type and field (never a payload, a parameter value or the token).

Per provider track (`inbound`, `outbound`) one engine track, opened on its first media, numbered in that
order: each 20 ms mu-law chunk is the track's encoded frame (sealed under the track key, as Opus frames
are; the recording's codec is `pcmu`) and is decoded to the 48 kHz speech timeline off the loop
(`worker.calls.track.TrackSpeech`, codec-aware). Runtime PHI variables are `customParameters` other than
`token` (the `Converse-Call-Variables` rules: at most 64 strings of at most 512 characters).

The call ends with the stream: `stop` or the socket closing ("ended": what was sent is kept), no media for
the WebRTC path's `no_media_timeout_s` or a protocol error ("failed"), `max_call_s`, or the server's
drain's deadline. Capacity and drain are shared with WebRTC (`worker.webrtc.peer.Calls` hooks): streams and
connected WebRTC calls together stay within `max_calls`, a draining server refuses new streams with 503
and waits for active ones until its deadline, then ends them "server draining".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from media.frames import EncodedFrame
from media.media_streams import (
    MAX_MESSAGE_BYTES,
    Chunk,
    Event,
    Lost,
    MediaStreamParser,
    MediaStreamsError,
    Started,
    Stopped,
)
from media.mulaw import CODEC
from storage.audit import Actor
from worker.app_context import AppContext
from worker.auth.access import Permission, Principal, check
from worker.auth.identity import IdentityError
from worker.auth.security import actor_of
from worker.calls.contracts import CallSummary
from worker.calls.engine import Call, Track
from worker.webrtc.peer import Calls

log = structlog.get_logger("worker.telephony.media_streams")

PATH: Final = "/media-streams"
SOURCE: Final = "media-streams"  # the engine's `source`; `transcripts list` shows it as the channel
TOKEN_PARAMETER: Final = "token"  # noqa: S105 - the name of the parameter, not a secret
_REASON_BYTES: Final = 120  # a WebSocket close reason is at most 123 bytes


@dataclass(frozen=True, slots=True)
class MediaStreamsConfig:
    start_timeout_s: float = 10.0  # `start` must arrive this soon after the upgrade
    shutdown_wait_s: float = 30.0  # on shutdown, streams get this long to finish their calls


class Refused(Exception):
    """Authentication or admission said no: (HTTP status before the upgrade, one-line reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Ended(Exception):
    """The stream is over: (status, reason) for the call."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class MediaStreams:
    """Active media-stream calls of this process, next to `worker.webrtc.peer.Calls` (whose budget they
    share)."""

    def __init__(self, ctx: AppContext, calls: Calls, config: MediaStreamsConfig | None = None) -> None:
        self.ctx = ctx
        self.calls = calls
        self.config = config or MediaStreamsConfig()
        self._sockets: set[web.WebSocketResponse] = set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutting_down = False
        self._end_reason: str | None = None  # set when the server ends every stream (drain, shutdown)
        self._closing: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return self._active

    def install(self, app: web.Application) -> None:
        app.add_routes([web.get(PATH, self.handle)])
        app.on_shutdown.append(self._shutdown)
        # WHIP admission counts the streams too, and the drain waits for them and ends them at its deadline
        self.calls.other_calls = self.__len__
        self.calls.end_other_calls = self._end_all

    # -- admission and authentication ---------------------------------------------------------------

    def _admit(self) -> None:
        cfg = self.calls.config
        if self.calls.draining or self._shutting_down:
            raise Refused(503, "server is draining")
        if self.calls.connected + self._active >= cfg.max_calls:
            raise Refused(503, f"at capacity ({cfg.max_calls} calls)")

    async def _authenticate(self, request: web.Request, token: str | None, via: str) -> Principal:
        audit = self.ctx.security.audit
        try:
            p = self.ctx.security.authenticator.authenticate(
                f"Bearer {token}" if token else None, request.remote
            )
        except IdentityError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "authentication failed"
            await audit.append(
                Actor(user_id="anonymous", ip=request.remote),
                "media-streams.authenticate",
                "media-streams",
                "denied",
                details={"reason": reason, "via": via},
            )
            raise Refused(401, reason) from None
        decision = check(p, Permission.CONFIGURE_AGENTS)
        await audit.append(
            actor_of(p),
            "media-streams.start",
            "media-streams",
            "allowed" if decision.allowed else "denied",
            details={"via": via} if decision.allowed else {"via": via, "reason": decision.reason},
        )
        if not decision.allowed:
            raise Refused(403, decision.reason)
        return p

    async def _audit_malformed(self, request: web.Request, reason: str) -> None:
        """A stream refused before it was authenticated (bad or missing start): anonymous, with the IP."""
        with contextlib.suppress(Exception):  # the socket closes with the reason either way
            await self.ctx.security.audit.append(
                Actor(user_id="anonymous", ip=request.remote),
                "media-streams.authenticate",
                "media-streams",
                "denied",
                details={"reason": reason},
            )

    # -- the handler ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        url_token = request.query.get(TOKEN_PARAMETER)
        principal: Principal | None = None
        try:
            self._admit()
            if url_token is not None:
                principal = await self._authenticate(request, url_token, "query")
        except Refused as exc:
            return web.Response(status=exc.status, text=exc.reason + "\n", content_type="text/plain")
        except Exception as exc:  # the audit log is down: nobody is let in unaccounted
            log.error("media_streams_audit_failed", error=type(exc).__name__)
            return web.Response(status=503, text="audit log unavailable\n", content_type="text/plain")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve(request, ws, principal)
        finally:
            self._sockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, principal: Principal | None
    ) -> None:
        parser = MediaStreamParser()
        try:
            started = await self._await_start(ws, parser)
        except _Ended as exc:
            await self._audit_malformed(request, exc.reason)
            await _close(ws, WSCloseCode.POLICY_VIOLATION, exc.reason)
            return
        try:
            if principal is None:
                principal = await self._authenticate(
                    request, started.custom_parameters.get(TOKEN_PARAMETER), "customParameters"
                )
            self._admit()
        except Refused as exc:
            code = WSCloseCode.TRY_AGAIN_LATER if exc.status == 503 else WSCloseCode.POLICY_VIOLATION
            await _close(ws, code, exc.reason)
            return
        except Exception as exc:
            log.error("media_streams_audit_failed", error=type(exc).__name__)
            await _close(ws, WSCloseCode.TRY_AGAIN_LATER, "audit log unavailable")
            return
        self._active += 1
        self._idle.clear()
        finishing: list[asyncio.Future[CallSummary]] = []
        try:
            await self._run_call(request, ws, parser, started, principal, finishing)
        finally:
            # A handler cancelled (aiohttp does when the connection goes) leaves its call finishing: the slot,
            # and the shutdown's wait, last until the call is finished and stored.
            if finishing and not finishing[0].done():
                finishing[0].add_done_callback(lambda _: self._release())
            else:
                self._release()

    def _release(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()
        self.calls.other_call_ended()

    def _end_all(self, reason: str) -> None:
        """The drain's deadline: every stream's socket is closed with `reason`; its call ends "ended"."""
        self._end_reason = reason
        for ws in list(self._sockets):
            task = asyncio.ensure_future(_close(ws, WSCloseCode.GOING_AWAY, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _await_start(self, ws: web.WebSocketResponse, parser: MediaStreamParser) -> Started:
        limit = self.config.start_timeout_s
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Ended("failed", f"no start message within {limit:g} s")
            events = _feed(parser, await _receive(ws, remaining, f"no start message within {limit:g} s"))
            for ev in events:
                if isinstance(ev, Started):
                    return ev

    async def _run_call(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        parser: MediaStreamParser,
        started: Started,
        principal: Principal,
        finishing: list[asyncio.Future[CallSummary]],
    ) -> None:
        variables = {k: v for k, v in started.custom_parameters.items() if k != TOKEN_PARAMETER}
        engine = self.ctx.engine
        try:
            call = await engine.start_call(
                org_id=principal.org_id, source=SOURCE, variables=variables, external_id=started.call_sid
            )
        except Exception as exc:  # the store is down: refused with a reason (store messages may hold paths)
            log.error("media_stream_setup_failed", error=type(exc).__name__)
            await _close(ws, WSCloseCode.TRY_AGAIN_LATER, "call setup failed")
            return
        bound = log.bind(call_id=call.call_id)
        try:
            await self.ctx.security.audit.append(
                actor_of(principal), "call.start", f"call/{call.call_id}", "ok", details={"via": SOURCE}
            )
        except Exception as exc:  # a call nobody can account for does not run
            bound.error("media_streams_start_not_recorded", error=type(exc).__name__)
            await call.finish("failed", "call start not recorded")
            await _close(ws, WSCloseCode.TRY_AGAIN_LATER, "call start could not be recorded")
            return
        bound.info("media_stream_started", tracks=list(started.tracks))
        stream = _Stream(call, self.calls.config.no_media_timeout_s, self.calls.config.max_call_s)
        status, reason, code = "ended", "stream stopped", WSCloseCode.OK
        try:
            await stream.run(ws, parser)
        except _Ended as exc:
            status, reason = exc.status, exc.reason
            code = WSCloseCode.POLICY_VIOLATION if exc.status == "failed" else WSCloseCode.OK
            if self._end_reason is not None and exc.reason == _CLOSED:
                status, reason, code = "ended", self._end_reason, WSCloseCode.GOING_AWAY
        except asyncio.CancelledError:
            status, reason = "failed", "call cancelled"
            raise
        except Exception as exc:  # one call's failure must not take the worker down; it ends loudly
            bound.error("media_stream_error", error=type(exc).__name__)
            status, reason, code = "failed", "internal error", WSCloseCode.INTERNAL_ERROR
        finally:
            # One task flushes and finishes, started before any await: a cancelled handler cannot skip it.
            finishing.append(asyncio.ensure_future(stream.end(parser, status, reason)))
            summary = await asyncio.shield(finishing[0])
            lost = [parser.counts(t)[1] + parser.counts(t)[2] for t in started.tracks]
            bound.info(
                "media_stream_finished",
                status=summary.status,
                reason=summary.reason,
                frames=stream.pushed,
                lost=lost,
            )
        await _close(ws, code, f"call {call.call_id}: {summary.reason or summary.status}")

    async def _shutdown(self, app: web.Application) -> None:
        """aiohttp's on_shutdown (the listener is already closed): every stream's call ends "server
        draining" and is finished before the app goes."""
        self._shutting_down = True
        self._end_reason = "server draining"
        for ws in list(self._sockets):
            await _close(ws, WSCloseCode.GOING_AWAY, "server draining")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.config.shutdown_wait_s)


_CLOSED: Final = "stream closed"


class _Stream:
    """One call's media: provider tracks -> engine tracks, chunks -> frames, the no-media timer."""

    __slots__ = ("_call", "_last_media", "_max_call_s", "_no_media_s", "_started", "pushed", "tracks")

    def __init__(self, call: Call, no_media_s: float, max_call_s: float) -> None:
        self._call = call
        self._no_media_s = no_media_s
        self._max_call_s = max_call_s
        self._started = self._last_media = time.monotonic()
        self.tracks: dict[str, Track] = {}
        self.pushed: dict[str, int] = {}

    async def _track(self, name: str) -> Track:
        track = self.tracks.get(name)
        if track is None:  # opened on its first media: numbered in the order the provider's tracks start
            track = self.tracks[name] = await self._call.open_track(codec=CODEC)
            self.pushed[name] = 0
        return track

    async def _apply(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, Chunk):
                self._last_media = time.monotonic()
                track = await self._track(ev.track)
                try:
                    await track.push(EncodedFrame(payload=ev.payload, timestamp=ev.timestamp))
                except RuntimeError as exc:  # storage failed or the pipeline stopped: the call ends
                    raise _Ended("failed", str(exc).splitlines()[0]) from None
                self.pushed[ev.track] += 1
            elif isinstance(ev, Lost):
                (await self._track(ev.track)).count_lost(ev.chunks)
            elif isinstance(ev, Stopped):
                raise _Ended("ended", "stream stopped")

    async def run(self, ws: web.WebSocketResponse, parser: MediaStreamParser) -> None:
        while True:
            now = time.monotonic()
            idle_left = self._no_media_s - (now - self._last_media)
            call_left = self._max_call_s - (now - self._started)
            if idle_left <= 0:
                raise _Ended("failed", f"no media for {self._no_media_s:g} s")
            if call_left <= 0:
                raise _Ended("ended", f"maximum call length ({self._max_call_s:g} s)")
            try:
                text = await _receive(ws, min(idle_left, call_left), None)
            except TimeoutError:
                continue  # the checks above say which limit it was
            await self._apply(_feed(parser, text))

    async def end(self, parser: MediaStreamParser, status: str, reason: str) -> CallSummary:
        """What the reorder window still holds is the call's too; then the call is finished."""
        try:
            await self._apply([ev for ev in parser.finish() if not isinstance(ev, Stopped)])
        except _Ended:
            pass  # the pipeline already refused a frame: the call ends with the stream's reason
        except Exception as exc:
            log.error("media_stream_flush_failed", call_id=self._call.call_id, error=type(exc).__name__)
        return await self._call.finish(status, reason)


def _feed(parser: MediaStreamParser, text: str) -> list[Event]:
    try:
        return parser.feed(text)
    except MediaStreamsError as exc:
        raise _Ended("failed", str(exc)) from None


async def _receive(ws: web.WebSocketResponse, wait_s: float, timeout_reason: str | None) -> str:
    """The next text message; `_Ended` when the socket closes or sends what the protocol has not."""
    try:
        msg = await ws.receive(timeout=wait_s)  # aiohttp's own timeout: no task per message
    except TimeoutError:
        if timeout_reason is None:
            raise
        raise _Ended("failed", timeout_reason) from None
    if msg.type == WSMsgType.TEXT:
        assert isinstance(msg.data, str)
        return msg.data
    if msg.type == WSMsgType.BINARY:
        raise _Ended("failed", "binary message: the protocol sends JSON text")
    if msg.type == WSMsgType.ERROR:
        detail = "message too large" if ws.close_code == WSCloseCode.MESSAGE_TOO_BIG else "WebSocket error"
        raise _Ended("failed", detail)
    raise _Ended("ended", _CLOSED)  # CLOSE / CLOSING / CLOSED: the provider hung up without `stop`


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    if ws.closed:
        return
    with contextlib.suppress(Exception):  # the peer may be gone already
        await ws.close(code=code, message=reason.encode()[:_REASON_BYTES])


def media_streams_routes(app: web.Application, ctx: AppContext, calls: Calls) -> MediaStreams:
    """Register `GET /media-streams` and its shutdown on `app`; returns the registry."""
    streams = MediaStreams(ctx, calls)
    streams.install(app)
    return streams

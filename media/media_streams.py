"""The Media Streams message protocol (Twilio's, which other providers copy), as a sans-IO state machine.

`MediaStreamParser.feed(text) -> list[Event]` takes each WebSocket text message; `finish()` at the end of
the stream releases what the reorder window still holds. No I/O, no clock: the caller owns the socket and
the no-media timer. Messages (https://www.twilio.com/docs/voice/media-streams/websocket-messages):

    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...", "start": {"streamSid", "accountSid",
        "callSid", "tracks": ["inbound", "outbound"], "customParameters": {...},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "sequenceNumber": "2", "streamSid": "MZ...", "media": {"track": "inbound",
        "chunk": "1", "timestamp": "5", "payload": "<base64 mu-law>"}}
    {"event": "mark", "streamSid": "MZ...", "mark": {"name": "..."}}
    {"event": "dtmf", ...}   (keypad digits may be PHI: ignored, never reported)
    {"event": "stop", "sequenceNumber": "9", "streamSid": "MZ...", "stop": {"accountSid", "callSid"}}

Timing: a chunk's place on the track's timeline is its `timestamp` (ms since the stream started, shared
by both tracks), never its arrival, so bursts keep their spacing and a gap is a gap. `chunk` (1, 2, ... per
track) orders them: a chunk that arrives early waits in a window of `REORDER_WINDOW` chunks for the ones
before it; a chunk still missing when the window is full is counted lost, one arriving after its place was
given up (or twice) is counted late, as are chunks whose timestamps do not move forward. Both come out as
`Lost` events (invariant 3: every chunk received is stored in order or counted lost).

Errors (`MediaStreamsError`) are one line naming the message type and the field, never a payload, a
parameter's value or an id: they end the stream with that reason.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from media.frames import SAMPLE_RATE

TRACKS: Final = ("inbound", "outbound")
ENCODING: Final = "audio/x-mulaw"
MEDIA_RATE: Final = 8000
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_PAYLOAD_BYTES: Final = 4000  # 0.5 s of 8 kHz mu-law per message (Twilio sends 160: 20 ms)
MAX_PARAMETERS: Final = 64
MAX_PARAMETER_CHARS: Final = 512
REORDER_WINDOW: Final = 8  # chunks (160 ms at 20 ms) a chunk waits for the ones before it
MAX_TIMESTAMP_MS: Final = 48 * 3600 * 1000
MAX_CHUNK: Final = 2**31
_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_TS_SCALE: Final = SAMPLE_RATE // 1000  # 48 kHz samples per ms


class MediaStreamsError(ValueError):
    """A message that cannot be used: the stream ends with this one-line reason."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Started:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str] = field(repr=False)  # may hold PHI: never logged


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk in order: `timestamp` in 48 kHz samples since the stream started (`media.frames`)."""

    track: str
    timestamp: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Lost:
    track: str
    chunks: int


@dataclass(frozen=True, slots=True)
class Mark:
    name: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Stopped:
    pass


Event = Connected | Started | Chunk | Lost | Mark | Stopped


@dataclass(slots=True)
class _TrackOrder:
    next_chunk: int | None = None  # the chunk number due next (None: none seen yet)
    last_ts: int = -1
    window: list[tuple[int, int, bytes]] = field(default_factory=list)  # heap of (chunk, ts, payload)
    chunks: int = 0
    lost: int = 0
    late: int = 0


def _obj(msg: Mapping[str, Any], key: str, event: str) -> Mapping[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise MediaStreamsError(f"{event}: {key} missing or not an object")
    return value


def _str(obj: Mapping[str, Any], key: str, event: str, *, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise MediaStreamsError(f"{event}: {key} missing or not a string")
    return value


def _id(obj: Mapping[str, Any], key: str, event: str) -> str:
    value = _str(obj, key, event)
    if not _ID.fullmatch(value):
        raise MediaStreamsError(f"{event}: {key} malformed")
    return value


def _int(obj: Mapping[str, Any], key: str, event: str, low: int, high: int) -> int:
    """A number or a decimal string (Twilio sends strings), low <= n <= high."""
    value = obj.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MediaStreamsError(f"{event}: {key} missing or not a number")
    if not low <= value <= high:
        raise MediaStreamsError(f"{event}: {key} out of range")
    return value


class MediaStreamParser:
    """One stream's protocol state: connected? -> start -> media/mark ... -> stop."""

    __slots__ = ("_tracks", "started", "stopped", "stream_sid")

    def __init__(self) -> None:
        self.started: Started | None = None
        self.stopped = False
        self.stream_sid: str | None = None
        self._tracks: dict[str, _TrackOrder] = {}

    # -- counters (per track: chunks in order, lost, late) --------------------------------------------

    def counts(self, track: str) -> tuple[int, int, int]:
        t = self._tracks.get(track)
        return (t.chunks, t.lost, t.late) if t is not None else (0, 0, 0)

    # -- messages ---------------------------------------------------------------------------------------

    def feed(self, text: str | bytes) -> list[Event]:
        if len(text) > MAX_MESSAGE_BYTES:
            raise MediaStreamsError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            msg = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise MediaStreamsError("message is not JSON") from None
        if not isinstance(msg, dict):
            raise MediaStreamsError("message is not a JSON object")
        event = msg.get("event")
        if not isinstance(event, str):
            raise MediaStreamsError("message: event missing or not a string")
        if self.stopped:
            raise MediaStreamsError(f"{event[:16]}: after stop")
        if event == "connected":
            if self.started is not None:
                raise MediaStreamsError("connected: after start")
            protocol = _str(msg, "protocol", event, optional=True)[:32]
            return [Connected(protocol, _str(msg, "version", event, optional=True)[:32])]
        if event == "start":
            return [self._start(msg)]
        if self.started is None:
            raise MediaStreamsError(f"{event[:16]}: before start")
        if _str(msg, "streamSid", event) != self.stream_sid:
            raise MediaStreamsError(f"{event[:16]}: streamSid does not match the start message")
        if event == "media":
            return self._media(msg)
        if event == "mark":
            return [Mark(_str(_obj(msg, "mark", event), "name", event)[:256])]
        if event == "stop":
            self.stopped = True
            return [*self.finish(), Stopped()]
        return []  # dtmf, and events newer than this code: ignored (their content is never looked at)

    def _start(self, msg: Mapping[str, Any]) -> Started:
        event = "start"
        if self.started is not None:
            raise MediaStreamsError("start: sent twice")
        start = _obj(msg, "start", event)
        stream_sid = _id(start, "streamSid", event)
        if "streamSid" in msg and msg.get("streamSid") != stream_sid:
            raise MediaStreamsError("start: streamSid does not match start.streamSid")
        call_sid = _id(start, "callSid", event)
        account_sid = _id(start, "accountSid", event) if "accountSid" in start else ""
        tracks = start.get("tracks", ["inbound"])
        if (
            not isinstance(tracks, list)
            or not tracks
            or len(set(tracks)) != len(tracks)
            or not all(t in TRACKS for t in tracks)
        ):
            raise MediaStreamsError("start: tracks must list inbound and/or outbound")
        fmt = _obj(start, "mediaFormat", event)
        if fmt.get("encoding") != ENCODING:
            raise MediaStreamsError(f"start: mediaFormat.encoding must be {ENCODING}")
        if _int(fmt, "sampleRate", "start: mediaFormat", 1, 10**6) != MEDIA_RATE:
            raise MediaStreamsError(f"start: mediaFormat.sampleRate must be {MEDIA_RATE}")
        if _int(fmt, "channels", "start: mediaFormat", 1, 1 << 16) != 1:
            raise MediaStreamsError("start: mediaFormat.channels must be 1")
        params = start.get("customParameters", {})
        if not isinstance(params, dict) or len(params) > MAX_PARAMETERS:
            raise MediaStreamsError(f"start: customParameters must be an object of at most {MAX_PARAMETERS}")
        if not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 128 and len(v) <= MAX_PARAMETER_CHARS
            for k, v in params.items()
        ):
            raise MediaStreamsError(
                f"start: customParameters names and values must be strings (values <= {MAX_PARAMETER_CHARS})"
            )
        self.stream_sid = stream_sid
        self.started = Started(stream_sid, call_sid, account_sid, tuple(tracks), dict(params))
        return self.started

    def _media(self, msg: Mapping[str, Any]) -> list[Event]:
        event = "media"
        media = _obj(msg, "media", event)
        track = media.get("track", "inbound")
        assert self.started is not None
        if track not in self.started.tracks:
            raise MediaStreamsError("media: track not announced in start.tracks")
        chunk = _int(media, "chunk", event, 1, MAX_CHUNK)
        ts = _int(media, "timestamp", event, 0, MAX_TIMESTAMP_MS) * _TS_SCALE
        raw = _str(media, "payload", event)
        if len(raw) > (MAX_PAYLOAD_BYTES + 2) // 3 * 4:
            raise MediaStreamsError(f"media: payload larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            payload = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise MediaStreamsError("media: payload is not base64") from None
        if not payload:
            raise MediaStreamsError("media: payload empty")
        order = self._tracks.setdefault(track, _TrackOrder())
        if order.next_chunk is None:
            order.next_chunk = chunk
        if chunk < order.next_chunk or any(c == chunk for c, _, _ in order.window):
            order.late += 1  # its place was given up, or a duplicate
            return [Lost(track, 1)]
        heapq.heappush(order.window, (chunk, ts, payload))
        return self._release(track, order, flush=False)

    def _release(self, track: str, order: _TrackOrder, *, flush: bool) -> list[Event]:
        out: list[Event] = []
        while order.window:
            first = order.window[0][0]
            assert order.next_chunk is not None
            if first != order.next_chunk:
                if not flush and len(order.window) < REORDER_WINDOW:
                    break
                missing = first - order.next_chunk  # given up on: they are lost
                order.lost += missing
                out.append(Lost(track, missing))
                order.next_chunk = first
            chunk, ts, payload = heapq.heappop(order.window)
            order.next_chunk = chunk + 1
            if ts <= order.last_ts:
                order.late += 1  # a timestamp that does not move forward cannot be stored in order
                out.append(Lost(track, 1))
                continue
            order.last_ts = ts
            order.chunks += 1
            out.append(Chunk(track, ts, payload))
        return out

    def finish(self) -> list[Event]:
        """The end of the stream (stop, or the socket closed): what the reorder windows hold, in order."""
        out: list[Event] = []
        for track, order in self._tracks.items():
            out += self._release(track, order, flush=True)
        return out

"""The Media Streams message protocol core (sans-IO): parsing, ordering by chunk, timing by timestamp."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from media.media_streams import (
    REORDER_WINDOW,
    Chunk,
    Connected,
    Lost,
    Mark,
    MediaStreamParser,
    MediaStreamsError,
    Started,
    Stopped,
)

SID = "MZ0123456789abcdef0123456789abcdef"
CALL = "CA0123456789abcdef0123456789abcdef"


def start_msg(**over: Any) -> str:
    start: dict[str, Any] = {
        "streamSid": SID,
        "accountSid": "AC0123456789abcdef0123456789abcdef",
        "callSid": CALL,
        "tracks": ["inbound", "outbound"],
        "customParameters": {"token": "secret-token", "patient_first_name": "Jane"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    start.update(over)
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": SID, "start": start})


def media_msg(chunk: int, ts_ms: int, payload: bytes = b"\xff" * 160, track: str = "inbound") -> str:
    media = {
        "track": track,
        "chunk": str(chunk),
        "timestamp": str(ts_ms),
        "payload": base64.b64encode(payload).decode(),
    }
    return json.dumps({"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": SID, "media": media})


def started() -> MediaStreamParser:
    p = MediaStreamParser()
    assert p.feed(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == [
        Connected("Call", "1.0.0")
    ]
    (ev,) = p.feed(start_msg())
    assert isinstance(ev, Started)
    assert (ev.stream_sid, ev.call_sid, ev.tracks) == (SID, CALL, ("inbound", "outbound"))
    assert ev.custom_parameters["patient_first_name"] == "Jane"
    assert "Jane" not in repr(ev)  # parameters may hold PHI: never in a repr (logs, tracebacks)
    return p


def test_in_order_chunks_are_placed_by_timestamp() -> None:
    p = started()
    assert p.feed(media_msg(1, 0)) == [Chunk("inbound", 0, b"\xff" * 160)]
    assert p.feed(media_msg(2, 20)) == [Chunk("inbound", 960, b"\xff" * 160)]
    # a gap in time with no chunk missing is a pause, not loss: placed at its timestamp
    assert p.feed(media_msg(3, 1000)) == [Chunk("inbound", 48_000, b"\xff" * 160)]
    # both tracks share the stream's clock, each has its own chunk numbers
    assert p.feed(media_msg(1, 40, track="outbound")) == [Chunk("outbound", 1920, b"\xff" * 160)]
    assert p.counts("inbound") == (3, 0, 0)


def test_burst_keeps_spacing() -> None:
    p = started()
    out = [ev for i in range(1, 11) for ev in p.feed(media_msg(i, 20 * (i - 1)))]
    assert [e.timestamp for e in out if isinstance(e, Chunk)] == [960 * i for i in range(10)]


def test_out_of_order_within_window_is_reordered() -> None:
    p = started()
    p.feed(media_msg(1, 0))
    assert p.feed(media_msg(3, 40)) == []  # waits for chunk 2
    assert p.feed(media_msg(4, 60)) == []
    out = p.feed(media_msg(2, 20))
    assert [e.timestamp for e in out if isinstance(e, Chunk)] == [960, 1920, 2880]
    assert p.counts("inbound") == (4, 0, 0)


def test_missing_chunk_is_lost_when_window_fills_and_late_arrival_is_lost_too() -> None:
    p = started()
    p.feed(media_msg(1, 0))
    events = []
    for c in range(3, 3 + REORDER_WINDOW):
        events += p.feed(media_msg(c, 20 * (c - 1)))
    assert events[0] == Lost("inbound", 1)  # chunk 2 given up on
    # then everything the window held goes out, in order
    assert [e.timestamp for e in events if isinstance(e, Chunk)] == [
        960 * c for c in range(2, 2 + REORDER_WINDOW)
    ]
    assert p.feed(media_msg(2, 20)) == [Lost("inbound", 1)]  # too late for its place
    assert p.feed(media_msg(1, 0)) == [Lost("inbound", 1)]  # a duplicate
    assert p.finish() == []
    assert p.counts("inbound") == (1 + REORDER_WINDOW, 1, 2)


def test_stop_flushes_the_window_and_counts_the_gap() -> None:
    p = started()
    p.feed(media_msg(1, 0))
    p.feed(media_msg(4, 60))
    out = p.feed(json.dumps({"event": "stop", "streamSid": SID, "stop": {"callSid": CALL}}))
    assert out == [Lost("inbound", 2), Chunk("inbound", 2880, b"\xff" * 160), Stopped()]
    with pytest.raises(MediaStreamsError, match=r"^media: after stop$"):
        p.feed(media_msg(5, 80))


def test_timestamp_that_does_not_advance_is_lost() -> None:
    p = started()
    p.feed(media_msg(1, 100))
    assert p.feed(media_msg(2, 100)) == [Lost("inbound", 1)]


def test_mark_and_dtmf() -> None:
    p = started()
    assert p.feed(json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "greeting"}})) == [
        Mark("greeting")
    ]
    dtmf = {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "4"}}
    assert p.feed(json.dumps(dtmf)) == []  # keypad digits may be PHI: never reported


def _payload(value: str) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": SID,
            "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": value},
        }
    )


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "message is not JSON"),
        ("[1]", "message is not a JSON object"),
        ('{"event": 3}', "message: event missing or not a string"),
        (_payload("***Jane***"), "media: payload is not base64"),
        (_payload(""), "media: payload empty"),
        (_payload("A" * 8000), "media: payload larger than 4000 bytes"),
        (
            json.dumps({"event": "media", "streamSid": "MZother", "media": {}}),
            "media: streamSid does not match the start message",
        ),
        (
            json.dumps(
                {
                    "event": "media",
                    "streamSid": SID,
                    "media": {"track": "inbound", "chunk": "x", "timestamp": "0", "payload": "/w=="},
                }
            ),
            "media: chunk missing or not a number",
        ),
        (
            json.dumps(
                {
                    "event": "media",
                    "streamSid": SID,
                    "media": {"track": "inbound", "chunk": "0", "timestamp": "0", "payload": "/w=="},
                }
            ),
            "media: chunk out of range",
        ),
        (
            json.dumps(
                {
                    "event": "media",
                    "streamSid": SID,
                    "media": {"track": "both", "chunk": "1", "timestamp": "0", "payload": "/w=="},
                }
            ),
            "media: track not announced in start.tracks",
        ),
        (json.dumps({"event": "media", "streamSid": SID}), "media: media missing or not an object"),
        (start_msg(), "start: sent twice"),
        ("x" * 70_000, "message larger than 65536 bytes"),
    ],
)
def test_malformed_messages_name_type_and_field_never_content(message: str, error: str) -> None:
    p = started()
    with pytest.raises(MediaStreamsError) as info:
        p.feed(message)
    assert str(info.value) == error
    assert "Jane" not in str(info.value) and "***" not in str(info.value)


@pytest.mark.parametrize(
    ("over", "error"),
    [
        (
            {"mediaFormat": {"encoding": "audio/l16", "sampleRate": 8000, "channels": 1}},
            "start: mediaFormat.encoding must be audio/x-mulaw",
        ),
        (
            {"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}},
            "start: mediaFormat.sampleRate must be 8000",
        ),
        (
            {"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}},
            "start: mediaFormat.channels must be 1",
        ),
        ({"tracks": ["inbound", "inbound"]}, "start: tracks must list inbound and/or outbound"),
        ({"tracks": []}, "start: tracks must list inbound and/or outbound"),
        ({"callSid": "CA Jane Doe's phone"}, "start: callSid malformed"),
        ({"callSid": 5}, "start: callSid missing or not a string"),
        (
            {"customParameters": {"name": "Jane" * 200}},
            "start: customParameters names and values must be strings (values <= 512)",
        ),
        (
            {"customParameters": {"n": 1}},
            "start: customParameters names and values must be strings (values <= 512)",
        ),
    ],
)
def test_malformed_start(over: dict[str, Any], error: str) -> None:
    p = MediaStreamParser()
    with pytest.raises(MediaStreamsError) as info:
        p.feed(start_msg(**over))
    assert str(info.value) == error
    assert "Jane" not in str(info.value)


def test_media_before_start_is_an_error() -> None:
    with pytest.raises(MediaStreamsError, match=r"^media: before start$"):
        MediaStreamParser().feed(media_msg(1, 0))


def test_connected_is_optional_and_numbers_may_be_ints() -> None:
    p = MediaStreamParser()
    p.feed(start_msg())
    msg = {
        "event": "media",
        "streamSid": SID,
        "media": {"track": "inbound", "chunk": 1, "timestamp": 20, "payload": "/w=="},
    }
    assert p.feed(json.dumps(msg)) == [Chunk("inbound", 960, b"\xff")]

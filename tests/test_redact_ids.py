"""Generated ids survive redaction whole: in a log line, in an audit resource, as a structlog field."""

from __future__ import annotations

import re

from structlog.testing import capture_logs

import redact
from redact.ids import safe_hex_id
from redact.logging import RedactPHI


def test_a_uuid_hex_with_a_ten_digit_run_is_what_the_redactor_takes() -> None:
    # Why ids are drawn specially: this uuid4 hex (from a failed CI run) lost its middle in the logs.
    mangled = redact.redact_text("call/8e5051050a6f48baa81d5551234567e3")
    assert mangled == "call/8e5051050a6f48baa81d[PHONE]e3"


def test_safe_ids_are_hex_of_the_asked_length_and_unique() -> None:
    ids = [safe_hex_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert re.fullmatch(r"[0-9a-f]{8}", safe_hex_id(4))


def test_safe_ids_are_never_redacted() -> None:
    for _ in range(20000):
        i = safe_hex_id()
        line = f"call/{i} track 1 started; call_id={i}"
        assert redact.redact_text(line) == line


def test_the_log_processor_keeps_a_safe_call_id() -> None:
    i = safe_hex_id()
    with capture_logs(processors=[RedactPHI()]) as logs:
        import structlog

        structlog.get_logger().info("call_started", call_id=i, phone="555 123 4567")
    assert logs[0]["call_id"] == i
    assert logs[0]["phone"] == "[PHONE]"

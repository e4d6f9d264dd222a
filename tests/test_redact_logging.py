"""Log redaction: nothing captured from structlog or stdlib logging carries PHI."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest
import structlog
from structlog.testing import capture_logs

from redact.logging import RedactingFilter, RedactPHI

PHONE = "404-555-0187"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
SPOKEN = "four oh four, five five five, oh one eight seven"
PHI = (PHONE, EMAIL, CARD, "4111111111111111", SPOKEN, "jane dot doe")


def assert_no_phi(text: str) -> None:
    for value in PHI:
        assert value not in text, value


def _fail_with_phi() -> None:
    raise ValueError(f"could not parse callback {PHONE} for {EMAIL}")


def test_processor_redacts_values_keys_nested_and_exceptions() -> None:
    with capture_logs(processors=[RedactPHI()]) as logs:
        log = structlog.get_logger()
        log.info(f"caller said {SPOKEN}", **{f"to {EMAIL}": "key carries PHI"})
        log.info("nested", ctx={"card": CARD, "list": [PHONE, ("t", EMAIL)], "n": 4045550187})
        try:
            _fail_with_phi()
        except ValueError:
            log.exception("failed", detail=f"retry {PHONE}")
        log.error("explicit", exc_info=ValueError(f"bad card {CARD}"))
    dumped = json.dumps(logs, default=str)
    assert_no_phi(dumped)
    assert "[PHONE]" in dumped and "[EMAIL]" in dumped and "[CARD]" in dumped
    assert logs[0]["event"] == "caller said [PHONE]"
    assert logs[0]["to [EMAIL]"] == "key carries PHI"
    assert logs[1]["ctx"] == {"card": "[CARD]", "list": ["[PHONE]", ("t", "[EMAIL]")], "n": "[PHONE]"}
    failed = logs[2]
    assert "exc_info" not in failed
    assert (
        "Traceback" in failed["exception"]
        and "ValueError: could not parse callback [PHONE]" in failed["exception"]
    )
    assert "bad card [CARD]" in logs[3]["exception"]


def test_processor_can_be_switched_off_per_event() -> None:
    flag = {"on": False}
    with capture_logs(processors=[RedactPHI(lambda: flag["on"])]) as logs:
        structlog.get_logger().info(PHONE)
        flag["on"] = True
        structlog.get_logger().info(PHONE)
    assert [e["event"] for e in logs] == [PHONE, "[PHONE]"]


def test_rendered_chain_output_is_redacted() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[RedactPHI(), structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    try:
        try:
            _fail_with_phi()
        except ValueError:
            structlog.get_logger().exception("boom", email=EMAIL)
    finally:
        structlog.reset_defaults()
    assert_no_phi(out.getvalue())
    assert "[EMAIL]" in out.getvalue()


def test_stdlib_filter_redacts_message_args_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_redact_logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("call back %s or mail %s", PHONE, EMAIL)
        try:
            _fail_with_phi()
        except ValueError:
            logger.exception("failed for card %s", CARD)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert_no_phi(text)
    assert "call back [PHONE] or mail [EMAIL]" in text
    assert "Traceback" in text and "[CARD]" in text


@pytest.mark.parametrize("enabled", [False, lambda: False])
def test_stdlib_filter_disabled_passes_through(enabled: bool | Callable[[], bool]) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n %s", (PHONE,), None)
    assert RedactingFilter(enabled).filter(record)
    assert record.getMessage() == f"n {PHONE}"

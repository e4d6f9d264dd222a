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


def _configured_output(run: Callable[[], None], *, json_format: bool = True) -> str:
    """Run `run` with `worker.logs.configure` writing to a buffer; the previous logging state restored."""
    import sys
    import threading

    from worker.logs import configure

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, threading.excepthook, sys.stderr)
    out = io.StringIO()
    sys.stderr = out
    try:
        configure(json=json_format)
        run()
    finally:
        sys.stderr = saved[3]
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        threading.excepthook = saved[2]
        logging.captureWarnings(False)
        structlog.reset_defaults()
    return out.getvalue()


HEADER_VALUE = "eyJuYW1lIjogIkphbmUgRG9lIiwgImRvYiI6ICIxOTcwLTAxLTAyIn0"  # base64 of a name and a DOB


def test_stdlib_records_share_the_json_chain_and_never_quote_request_data() -> None:
    def run() -> None:
        log = logging.getLogger("aiohttp.server")
        try:
            raise ValueError(f"Got more than 8190 bytes when reading: b'{HEADER_VALUE}'; card {CARD}")
        except ValueError:
            log.exception("Error handling request from %s", "127.0.0.1")
        logging.getLogger("asyncio").error(
            "Task exception was never retrieved\nfuture: <Task exception=LineTooLong(\"b'%s'\")>",
            HEADER_VALUE,
        )
        logging.getLogger("aioice").warning("callback %s for %s", PHONE, EMAIL)
        logging.getLogger("aioice").info("chatter below WARNING is not shown")
        structlog.get_logger("worker").info("ours", email=EMAIL)

    text = _configured_output(run)
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert [e.get("logger") for e in lines] == ["aiohttp.server", "asyncio", "aioice", None]
    assert HEADER_VALUE not in text and "eyJuYW1l" not in text
    assert_no_phi(text)
    assert "LineTooLong" not in lines[0]["exception"]  # the message is withheld, the type and frames kept
    assert "builtins.ValueError (message withheld)" in lines[0]["exception"]
    assert "Traceback" in lines[0]["exception"] and "in run" in lines[0]["exception"]
    assert lines[2]["event"] == "callback [PHONE] for [EMAIL]" and lines[2]["level"] == "warning"
    assert lines[3]["email"] == "[EMAIL]"


def test_thread_exceptions_go_through_the_chain() -> None:
    import threading

    def boom() -> None:
        raise RuntimeError(f"token {HEADER_VALUE} for {PHONE}")

    def run() -> None:
        t = threading.Thread(target=boom)
        t.start()
        t.join()

    text = _configured_output(run)
    (entry,) = [json.loads(line) for line in text.splitlines()]
    assert entry["logger"] == "threading" and "RuntimeError (message withheld)" in entry["exception"]
    assert HEADER_VALUE not in text
    assert_no_phi(text)

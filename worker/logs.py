"""structlog set-up: contextvars for call_id/track, PHI redaction near the end, JSON to stderr.

The stdlib root logger (aiohttp, aiortc, aioice, asyncio, threads' uncaught exceptions) goes through the
same chain: a `ProcessorFormatter` on the one root handler renders its records with structlog's renderer
after `scrub_foreign` (exception messages withheld, quoted bytes and opaque tokens removed: a rejected
header's value never reaches the log) and the same `RedactPHI`. So `--log-format json` stays one JSON
object per line whoever logs.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TextIO

import structlog

# Third-party loggers chatter at INFO (aioice logs every candidate pair); they speak from WARNING up
# unless the worker runs at DEBUG.
FOREIGN_MIN_LEVEL = logging.WARNING


class _StderrHandler(logging.Handler):
    """Writes through structlog's PrintLogger: stdlib and structlog lines share its lock, never interleave."""

    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self._out = structlog.PrintLogger(file=file)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.msg(self.format(record))
        except Exception:
            self.handleError(record)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("threading").error("uncaught exception in a thread", exc_info=exc)


def configure(
    *, json: bool = True, level: int = logging.INFO, phi_protection: Callable[[], bool] | bool = True
) -> None:
    from redact.logging import RedactPHI, scrub_foreign

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        RedactPHI(phi_protection),  # after exception formatting so traceback text is redacted too
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                scrub_foreign,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                RedactPHI(phi_protection),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:  # configured again
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level <= logging.DEBUG else max(level, FOREIGN_MIN_LEVEL))
    logging.captureWarnings(True)
    threading.excepthook = _thread_excepthook

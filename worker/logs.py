"""structlog set-up: contextvars for call_id/track, PHI redaction near the end, JSON to stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import structlog


def configure(
    *, json: bool = True, level: int = logging.INFO, phi_protection: Callable[[], bool] | bool = True
) -> None:
    from redact.logging import RedactPHI

    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        RedactPHI(phi_protection),  # after exception formatting so traceback text is redacted too
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )

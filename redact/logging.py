"""PHI redaction for log output: a structlog processor and a stdlib `logging.Filter`.

Place `RedactPHI()` near the end of the structlog chain, after `format_exc_info`/`dict_tracebacks` if
present and just before the renderer, so nothing reaches a handler unredacted. It formats `exc_info`
itself (the traceback text is redacted, not the exception object passed on) and redacts every string in
the event: values, dict keys, nested dicts/lists/tuples/sets, and `exception`/`stack` text.

If redaction of a value fails, that value is replaced by "[REDACTION_FAILED]": logs fail closed too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from structlog.processors import format_exc_info
from structlog.typing import EventDict, WrappedLogger

from redact.errors import RedactionError
from redact.pipeline import redact_text

FAILED = "[REDACTION_FAILED]"


def _redact_str(value: str) -> str:
    try:
        return redact_text(value)
    except RedactionError:
        return FAILED


def redact_value(value: Any) -> Any:
    """`value` with every string inside redacted; other leaves kept (ints that look like PHI become str)."""
    if isinstance(value, str):
        return _redact_str(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        as_text = str(value)
        redacted = _redact_str(as_text)
        return value if redacted == as_text else redacted
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    if isinstance(value, set | frozenset):
        return {redact_value(v) for v in value}
    if isinstance(value, BaseException):
        return _redact_str(f"{type(value).__name__}: {value}")
    return value  # other objects are rendered later; renderers call repr() on them - keep logs to plain data


class RedactPHI:
    """structlog processor; `enabled` is a bool or a callable read per event (the PHI-protection flag)."""

    __slots__ = ("_enabled",)

    def __init__(self, enabled: Callable[[], bool] | bool = True) -> None:
        self._enabled = enabled

    def _is_on(self) -> bool:
        return self._enabled() if callable(self._enabled) else self._enabled

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._is_on():
            return event_dict
        if event_dict.get("exc_info"):
            event_dict = format_exc_info(logger, method_name, event_dict)
        else:
            event_dict.pop("exc_info", None)
        return {redact_value(k): redact_value(v) for k, v in event_dict.items()}


class RedactingFilter(logging.Filter):
    """stdlib filter: redacts the formatted message, exception and stack text of each record in place.

    Attach it to handlers (a logger's filters do not see records propagated from child loggers).
    """

    def __init__(self, enabled: Callable[[], bool] | bool = True, name: str = "") -> None:
        super().__init__(name)
        self._enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if not (self._enabled() if callable(self._enabled) else self._enabled):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep no arguments (they may be PHI)
            message = str(record.msg)
        record.msg, record.args = _redact_str(message), None
        if record.exc_info:
            record.exc_text = _redact_str(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = _redact_str(record.exc_text)
        if record.stack_info:
            record.stack_info = _redact_str(record.stack_info)
        return True

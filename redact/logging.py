"""PHI redaction for log output: a structlog processor and a stdlib `logging.Filter`.

Place `RedactPHI()` near the end of the structlog chain, after `format_exc_info`/`dict_tracebacks` if
present and just before the renderer, so nothing reaches a handler unredacted. It formats `exc_info`
itself (the traceback text is redacted, not the exception object passed on) and redacts every string in
the event: values, dict keys, nested dicts/lists/tuples/sets, and `exception`/`stack` text.

If redaction of a value fails, that value is replaced by "[REDACTION_FAILED]": logs fail closed too.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
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


# Third-party log records (aiohttp, aiortc, aioice, asyncio) quote request data: a rejected header's value
# in an exception message, an exception's repr inside "Task exception was never retrieved". Their messages
# and exception texts are not ours to trust, so byte-string reprs and long opaque tokens (base64, hex,
# JWTs: the shapes a header value takes) are replaced before the PHI redaction runs.
_BYTES_REPR_RE = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?)""")
_OPAQUE_RE = re.compile(r"[A-Za-z0-9+/_=.-]{24,}")
OPAQUE = "[OPAQUE]"


def _opaque(match: re.Match[str]) -> str:
    token = match.group(0)
    # Words, dotted module paths and file paths are kept; a run mixing letters and digits is a value.
    if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
        return OPAQUE
    return token


def scrub_foreign_text(text: str) -> str:
    """`text` without byte-string reprs and long opaque tokens (a stdlib record's message or traceback)."""
    return _OPAQUE_RE.sub(_opaque, _BYTES_REPR_RE.sub("b'[OPAQUE]'", text))


def safe_exception_text(exc_info: Any) -> str:
    """A traceback that names types and frames but drops every exception message (they quote data)."""
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    else:
        return ""
    lines: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = traceback.format_tb(exc.__traceback__)
        lines.append("".join(frames) + f"{type(exc).__module__}.{type(exc).__qualname__} (message withheld)")
        exc = exc.__cause__ or exc.__context__
    return "Traceback (most recent call last):\n" + "\n-- while handling --\n".join(reversed(lines))


def scrub_foreign(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor for `ProcessorFormatter.foreign_pre_chain`: runs on stdlib records only.

    The exception is rendered without its message, and the message is scrubbed of quoted data, whether or
    not PHI protection is on: header values and request bytes are never logged.
    """
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        event_dict["exception"] = safe_exception_text(exc_info)
    # Frames name files and source lines only (no data): the message is what may quote a request.
    if isinstance(event := event_dict.get("event"), str):
        event_dict["event"] = scrub_foreign_text(event)
    return event_dict

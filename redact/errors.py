"""Errors raised by redaction. Messages never carry the text being redacted."""

from __future__ import annotations


class RedactionError(Exception):
    """Redaction could not complete; the caller must not write the text (fail closed)."""

"""Budgets and checks shared by the fuzz tests."""

from __future__ import annotations

import os

# `FUZZ_SCALE=50 pytest tests/test_fuzz_*.py` runs each property 50x its suite budget (scripts/fuzz.sh).
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def EXAMPLES(n: int) -> int:  # noqa: N802 - reads as a constant at the decorator
    return max(1, int(n * SCALE))


def one_line(message: str) -> None:
    """Errors at an edge are one non-empty line (they end up in a 4xx body or a CLI's stderr)."""
    assert message.strip(), "empty error message"
    assert not any(c in message for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), repr(message)

"""Budgets and checks shared by the fuzz tests."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings

# `FUZZ_SCALE=50 pytest tests/test_fuzz_*.py` runs each property 50x its suite budget (scripts/fuzz.sh).
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def EXAMPLES(n: int) -> int:
    return max(1, int(n * SCALE))


def one_line(message: str) -> None:
    """Errors at an edge are one non-empty line (they end up in a 4xx body or a CLI's stderr)."""
    assert message.strip(), "empty error message"
    assert not any(c in message for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), repr(message)


# In the suite the fuzz tests are derandomized (the same examples every run, so a red build is
# reproducible and a known, reported bug cannot turn it red at random); scripts/fuzz.sh sets FUZZ_SCALE
# and gets fresh random examples on every run.
DERANDOMIZE = "FUZZ_SCALE" not in os.environ


def fuzz(n: int, **kwargs: Any) -> settings:
    """Hypothesis settings for a fuzz test with a suite budget of `n` examples."""
    return settings(max_examples=EXAMPLES(n), deadline=None, derandomize=DERANDOMIZE, **kwargs)

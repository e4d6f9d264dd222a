"""Fuzz `redact.redact_text`: it never raises on any str, its output is a fixed point (redacting again
changes nothing), and no 10-digit run or Luhn-valid 13-19 digit run survives it."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redact import redact_text
from redact.card import luhn_valid
from tests.fuzz.support import EXAMPLES

_RUN = re.compile(r"(?<!\d)\d+(?!\d)")  # \d is any Unicode decimal digit, as ASR or a client may send


def surviving_runs(text: str) -> list[str]:
    bad = []
    for run in _RUN.findall(text):
        ascii_run = "".join(str(unicodedata.digit(c)) for c in run)
        if len(ascii_run) == 10 or (13 <= len(ascii_run) <= 19 and luhn_valid(ascii_run)):
            bad.append(run)
    return bad


def check(text: str, variables: dict[str, str] | None = None) -> None:
    out = redact_text(text, variables)  # must not raise (RedactionError included)
    assert redact_text(out, variables) == out, "not idempotent"
    assert surviving_runs(out) == [], (text, out)


PIECES = st.one_of(
    st.text("0123456789", min_size=1, max_size=20),
    st.sampled_from(["5551234567", "4111111111111111", "378282246310005", "123-45-6789", "(555) 123-4567"]),
    st.sampled_from(["a", "x", "ext", "MRN", "card", "phone", "oh", "five", "double", "at", "dot", "plus"]),
    st.sampled_from([" ", ", ", ". ", "-", ".", "/", "_", "+", "@", "#", ":", "\n", "\t", "\u00a0", "\u200b"]),
    st.text("\u0660\u0661\u0662\u0665\u0669\uff10\uff11\uff15\u0966\u096b", min_size=1, max_size=12),
)


@settings(max_examples=EXAMPLES(400), deadline=None)
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    check(text)


@settings(max_examples=EXAMPLES(600), deadline=None)
@given(st.lists(PIECES, max_size=25).map("".join))
@example("call 5551234567 now")
def test_digit_heavy_text(text: str) -> None:
    out = redact_text(text)
    assert redact_text(out) == out, "not idempotent"
    # Known survivors (see the xfail regressions below) are excluded here so the fuzzer keeps looking for
    # new ones; remove this filter when they are fixed.
    if _KNOWN_SURVIVOR.search(text):
        return
    assert surviving_runs(out) == [], (text, out)


@settings(max_examples=EXAMPLES(200), deadline=None)
@given(
    st.lists(PIECES, max_size=15).map("".join),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)
def test_with_variables(text: str, variables: dict[str, str]) -> None:
    redact_text(text, variables)  # must not raise, whatever the variables hold


@settings(max_examples=EXAMPLES(50), deadline=None)
@given(st.integers(1000, 20_000), st.sampled_from(["5", "5 ", "55-", "a5", "five ", "@a."]))
def test_long_input(size: int, unit: str) -> None:
    """Long transcripts (a 10-minute monologue without punctuation) neither raise nor hang."""
    redact_text(unit * (size // len(unit)))


# -- regressions: digit runs that survive redaction -------------------------------------------------

_KNOWN_SURVIVOR = re.compile(r"[^\W\d_]\d{10,19}[^\W\d_]|\d\.\d{10,19}(?!\d)|(?<!\d)\d{10,19}\.\d")


@pytest.mark.xfail(
    strict=True,
    reason="bug (redact/, being edited): a 10-digit run between letters survives: 'a5551234567b'",
)
@pytest.mark.parametrize("text", ["a5551234567b", "id a5551234567b ok", "x4111111111111111y"])
def test_regression_run_between_letters(text: str) -> None:
    assert surviving_runs(redact_text(text)) == []


@pytest.mark.xfail(
    strict=True,
    reason="bug (redact/, being edited): a 10-digit run inside a decimal survives: '12.5551234567', "
    "'5551234567.89'",
)
@pytest.mark.parametrize("text", ["12.5551234567", "5551234567.89", "pay 4111111111111111.00"])
def test_regression_run_in_a_decimal(text: str) -> None:
    assert surviving_runs(redact_text(text)) == []

"""Fail closed on phones the ASR wrote as amounts: ten or more digits joined by thousands separators or
points are redacted like the plain run ("It is $5,551,234,567." was stored readable on a telephone-band
replay); prices, doses, dates and lab values with fewer digits stay."""

from __future__ import annotations

import pytest

from redact import redact_text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("It is $5,551,234,567.", "It is $[PHONE]."),
        ("It is $555,123,4567", "It is $[PHONE]"),
        ("Call 5.551.234.567 today", "Call [PHONE] today"),
        ("It is $5.551234567", "It is $[PHONE]"),
        ("The card is 4,111,111,111,111,111.", "The card is [CARD]."),
        ("MRN 5,551,234,567", "MRN 5,551,234,567"),  # a labelled identifier stays (dev rule 5)
        ("The copay is $1,234.56 today.", "The copay is $1,234.56 today."),
        ("about $1,250,000.00 total", "about $1,250,000.00 total"),  # nine digits
        ("Lab values were 5.5, 4.3 and 2.1.", "Lab values were 5.5, 4.3 and 2.1."),
        ("Visit on 12.04.2026 at 10.30.", "Visit on 12.04.2026 at 10.30."),
    ],
)
def test_amount_shaped_phones(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted

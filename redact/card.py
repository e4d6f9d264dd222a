"""Payment card numbers: 13-19 digits, Luhn-checked (ISO/IEC 7812-1 Annex B)."""

from __future__ import annotations

import re

from redact.context import Cue
from redact.numbers import ascii_digits

# Issuer prefixes of the networks a caller names (Visa, Mastercard incl. 2-series, Amex, Discover, JCB,
# Diners, UnionPay): a Luhn-failing number is still a card when the speaker calls it one and it starts so.
_NETWORK_RE = re.compile(r"4|5[1-5]|2[2-7]|3[47]|35|3[068]|6011|64[4-9]|65|62")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check; any decimal digit counts ("4111...1" in Arabic-Indic
    digits too), anything else fails."""
    if not digits.isascii():
        digits = ascii_digits(digits)
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card(digits: str, cue: Cue | None) -> bool:
    """A card if Luhn-valid in any context (fail closed), or Luhn-invalid but called a card.

    Callers try phone shapes first for numbers with a leading 0 (no issuer prefix starts with 0).
    """
    if not 13 <= len(digits) <= 19:
        return False
    if luhn_valid(digits):
        return True
    return cue is Cue.CARD and _NETWORK_RE.match(digits) is not None

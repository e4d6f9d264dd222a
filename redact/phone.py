"""Telephone numbers: NANP (7-digit local, 10/11-digit, toll-free) and international (E.164, 00-prefixed,
national forms with a trunk 0 such as UK 020 7946 0958, AU 0491 570 156, FR 01 99 00 27 45)."""

from __future__ import annotations

import re

from redact.numbers import DIGIT_WORDS, TEENS, TENS

# Service codes are never phones, whatever surrounds them.
SERVICE_CODES = frozenset({"211", "311", "411", "511", "611", "711", "811", "911", "988"})

_DW = "|".join([*DIGIT_WORDS, *TEENS, *TENS, "hundred", "double", "triple"])
# ", extension 204" / " ext. 12" / " x3301" / ", extension two oh four" / "extension two fifty", right after
# the last digit.
EXTENSION_RE = re.compile(
    rf"(?:\s*,)?\s*(?:(?:ext\.?|extension)\s*(?:\d+|(?:{_DW})(?:[\s-]+(?:{_DW}))*)"
    rf"|x\s?\d+)\b",
    re.IGNORECASE,
)


def is_phone(digits: str, intl: bool) -> bool:
    """Whether a digit string (country code included, "+" and separators removed) is phone-shaped."""
    n = len(digits)
    if intl:  # "+44 ..." / "plus one ..."
        if digits.startswith("1"):
            return n == 11
        return 9 <= n <= 15
    if digits.startswith("00") and n != 10:  # 0044 20 7946 0958, 0049 (0)30 5550 2290
        return 11 <= n <= 17
    if n == 7:
        return digits[0] not in "01"
    if n == 10:
        return True  # NANP, or a national number with a trunk 0 (AU, FR, IN); fail closed on the rest
    if n == 11:
        return digits[0] in "01"  # 1-800-..., UK 07700 900417
    return False

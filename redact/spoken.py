"""Numbers to the words a caller says for them, as regex fragments (used to find known values).

`cardinal_forms(412)` covers "four hundred twelve", "four hundred and twelve", "four one two", "four
twelve"; `year_forms(1962)` covers "nineteen sixty two"; `ordinal_forms(21)` covers "twenty-first". Each
fragment lets a space or a hyphen stand between words.
"""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORD_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
SEP = r"[\s,-]+"


def words_below_100(n: int) -> str:
    if n < 10:
        return _ONES[n]
    if n < 20:
        return _TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def words(n: int, *, with_and: bool = False) -> str:
    """Plain English cardinal for 0 <= n < 1,000,000."""
    if n < 100:
        return words_below_100(n)
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = f"{_ONES[hundreds]} hundred"
    else:
        thousands, rest = divmod(n, 1000)
        head = f"{words(thousands)} thousand"
    if not rest:
        return head
    return f"{head} {'and ' if with_and else ''}{words(rest, with_and=with_and)}"


def _pair(n: int) -> str:
    """Two digits as said in pairs: 5 -> "oh five", 62 -> "sixty two"."""
    return f"oh {_ONES[n]}" if n < 10 else words_below_100(n)


def _alt(forms: set[str]) -> str:
    ordered = sorted(forms, key=len, reverse=True)  # longest first: the regex prefers the full form
    return "(?:" + "|".join(SEP.join(map(re.escape, f.split())) for f in ordered) + ")"


def digit_by_digit(digits: str) -> set[str]:
    return {
        " ".join(_ONES[int(d)] for d in digits),
        " ".join("oh" if d == "0" else _ONES[int(d)] for d in digits),
    }


def cardinal_forms(n: int) -> str:
    forms = {words(n), words(n, with_and=True), *digit_by_digit(str(n))}
    if 100 <= n < 10000 and n % 100:
        forms.add(f"{words(n // 100)} {_pair(n % 100)}")  # 412 "four twelve", 4410 "forty four ten"
    return _alt(forms)


def ordinal_word(n: int) -> str:
    text = words_below_100(n)
    head, _, last = text.rpartition(" ")
    if last in _ORD_IRREGULAR:
        last = _ORD_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def ordinal_forms(n: int) -> str:
    return _alt({ordinal_word(n), words_below_100(n)})


def year_forms(year: int) -> str:
    forms = {words(year), words(year, with_and=True)}
    head, tail = divmod(year, 100)
    if tail == 0:
        forms.add(f"{words_below_100(head)} hundred")
    elif head >= 10:
        forms.add(f"{words_below_100(head)} {_pair(tail)}")  # nineteen sixty two, twenty oh four
    return _alt(forms)

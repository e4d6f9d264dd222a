"""A known date (a date of birth) in the forms it is written and said.

"1962-03-04" is found as "3/4/1962", "03-04-62", "1962-03-04", "March 4th, 1962", "Mar. 4 1962",
"the fourth of March, nineteen sixty two" and "March fourth, nineteen sixty-two". Day-first numeric forms
are matched too (fail closed: a 4/3/1962 is as likely a European caller as a different date). A date
without its year is not matched: "March fourth" alone is as likely an appointment.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from redact.spoken import SEP, ordinal_forms, year_forms

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%m.%d.%Y",
    "%m/%d/%y",
    "%B %d, %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
)


def parse_date(value: str) -> date | None:
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", value.strip(), flags=re.IGNORECASE)
    for fmt in _FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date()  # a calendar date: no time zone
        except ValueError:
            continue
    return None


def date_pattern(d: date) -> str:
    """One regex (no groups) for `d` in every written and spoken form above."""
    m, day, y = d.month, d.day, d.year
    yy = f"{y % 100:02d}"
    num_m = rf"0?{m}"
    num_d = rf"0?{day}"
    numeric = [
        rf"{num_m}([/.-]){num_d}\1(?:{y}|{yy})",
        rf"{num_d}([/.-]){num_m}\2(?:{y}|{yy})",
        rf"{y}([/.-]){m:02d}\3{day:02d}",
    ]
    name = _MONTHS[m - 1]
    month = rf"(?:{name}|{name[:3]}\.?)"
    day_any = rf"(?:{day}(?:st|nd|rd|th)?|{ordinal_forms(day)})"
    year_any = rf"(?:{y}|'{yy}|{year_forms(y)})"
    spoken = [
        rf"{month}{SEP}(?:the{SEP})?{day_any}(?:{SEP}of)?{SEP}{year_any}",
        rf"(?:the{SEP})?{day_any}{SEP}(?:of{SEP})?{month}{SEP}{year_any}",
    ]
    return r"(?<![\w/.-])(?:" + "|".join(numeric + spoken) + r")(?![\w/-]|\.\d)"

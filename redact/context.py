"""What the words before a number say it is: a phone, a card, an SSN, or another identifier.

The nearest cue wins: "call the pharmacy with Rx number 555-0172" is an Rx number, "your claim is approved,
call 555-0104" is a phone. Cues are looked for in a short window before the number, across a sentence end
("Can you confirm the MRN for me? It's 555-0194.").
"""

from __future__ import annotations

import re
from enum import Enum

WINDOW = 80


class Cue(Enum):
    PHONE = "phone"
    CARD = "card"
    SSN = "ssn"
    OTHER_ID = "other_id"


_WORD_RE = re.compile(r"[A-Za-z]+")
# Single words, then two-word labels (checked first: "auth number" is an ID, "area code" a phone lead-in).
_UNIGRAMS: dict[str, Cue] = {
    **dict.fromkeys(
        "mrn npi dea rx confirmation authorization authorisation claim policy ticket invoice tracking id"
        " identification license serial pin passcode cvv cvc voucher booking encounter subscriber".split(),
        Cue.OTHER_ID,
    ),
    **dict.fromkeys(
        "card visa mastercard amex discover jcb diners debit credit hsa fsa".split(),
        Cue.CARD,
    ),
    **dict.fromkeys("social ssn".split(), Cue.SSN),
    **dict.fromkeys(
        "phone cell cellphone mobile fax call calls calling text dial reach reached line landline telephone"
        " tel contact pager".split(),
        Cue.PHONE,
    ),
}
_ID_HEADS = frozenset(
    "claim member policy group account acct reference case ticket invoice order lot batch plan prescription"
    " appointment patient record chart visit insurance auth access verification promo".split()
)
_ID_TAILS = frozenset("id number no code".split())
_BIGRAMS: dict[tuple[str, str], Cue] = {
    ("area", "code"): Cue.PHONE,
    ("master", "card"): Cue.CARD,
    ("american", "express"): Cue.CARD,
    ("medical", "record"): Cue.OTHER_ID,
    ("social", "security"): Cue.SSN,
    ("security", "code"): Cue.OTHER_ID,
}


def cue_index(text: str) -> list[tuple[int, int, Cue]]:
    """Every cue in the text as (start, end, cue), in order; words inside "[CARD]"-style placeholders
    are not cues (so a second pass over redacted text sees what the first saw)."""
    out: list[tuple[int, int, Cue]] = []
    prev = ""
    prev_start = 0
    for m in _WORD_RE.finditer(text):
        w = m.group().lower()
        s = m.start()
        cue = _BIGRAMS.get((prev, w))
        if cue is None and prev in _ID_HEADS and w in _ID_TAILS:
            cue = Cue.OTHER_ID
        if cue is not None:
            out.append((prev_start, m.end(), cue))
        elif (c := _UNIGRAMS.get(w)) is not None and not (s and text[s - 1] == "["):
            out.append((s, m.end(), c))
        prev, prev_start = w, s
    return out


def nearest_cue(
    text: str, start: int, floor: int = 0, index: list[tuple[int, int, Cue]] | None = None
) -> Cue | None:
    """The cue closest before `start` (not before `floor`, e.g. the end of the previous entity)."""
    lo = max(floor, start - WINDOW)
    last: Cue | None = None
    for s, e, cue in cue_index(text) if index is None else index:
        if e > start:
            break
        if s >= lo:
            last = cue
    return last

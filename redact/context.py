"""What the words before a number say it is: a phone, a card, an SSN, or another identifier.

The nearest cue wins: "call the pharmacy with Rx number 555-0172" is an Rx number, "your claim is approved,
call 555-0104" is a phone. Cues are looked for in a short window before the number, across a sentence end
("Can you confirm the MRN for me? It's 555-0194."). A bare "number" ("my number is") is a phone cue
unless a label comes right before it ("card number", "claim number") or it counts ("the number of").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from typing import Final

from redact.numbers import trie

WINDOW = 80


class Cue(Enum):
    PHONE = "phone"
    CARD = "card"
    SSN = "ssn"
    OTHER_ID = "other_id"


_WORD_RE = re.compile(r"[A-Za-z]+")
# Single words, then two-word labels (tried first: "auth number" is an ID, "area code" a phone lead-in).
_UNIGRAMS: dict[str, Cue] = {
    **dict.fromkeys(
        "mrn npi dea rx confirmation authorization authorisation claim policy ticket invoice tracking id"
        " identification license serial pin passcode cvv cvc voucher booking encounter subscriber".split(),
        Cue.OTHER_ID,
    ),
    **dict.fromkeys(
        "card visa mastercard amex discover jcb diners debit credit hsa fsa charge".split(),
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
# "my number is ...", "the best number to reach you": a phone, unless a label came first ("card number",
# "claim number", "social security number") or it counts something ("the number of refills").
_NUMBER_NOT_AFTER = frozenset([*_UNIGRAMS, *_ID_HEADS, *(b for _, b in _BIGRAMS), "security", "id"])

_ASR_CARD = frozenset(("car", "cart"))  # what tiny.en writes for "card" before "number"

_NOT_LETTER_BEFORE, _NOT_LETTER_AFTER = r"(?<![a-z])", r"(?![a-z])"


def _alt(words: Iterable[str]) -> str:
    return trie(sorted(set(words)))


# One pass over the lower-cased text finds every cue: two-word labels first (the regex takes the first
# alternative that matches at a position), then single words, then "number" (checked in `cue_index`).
_CUE_RE = re.compile(
    _NOT_LETTER_BEFORE
    + "(?:"
    + rf"(?P<pair>(?:{_alt({a for a, _ in _BIGRAMS})})[^a-z]+(?:{_alt({b for _, b in _BIGRAMS})})"
    + rf"|(?:{_alt(_ID_HEADS)})[^a-z]+(?:{_alt(_ID_TAILS)}))"
    + rf"|(?<!\[)(?P<word>{_alt(_UNIGRAMS)})"
    + r"|(?P<number>number)"
    + ")"
    + _NOT_LETTER_AFTER
)
_LAST_WORD_RE = re.compile(r"([a-z]+)[^a-z]*$")
_OF_RE = re.compile(r"[^a-z]+of(?![a-z])")
_SPLIT_RE = re.compile(r"[^a-z]+")


# Every word a cue match can start with (`_cue_matches`). Final: mypyc reads it as a C static.
_CUE_FIRST_WORDS: Final = frozenset([*_UNIGRAMS, *_ID_HEADS, *(a for a, _ in _BIGRAMS), "number"])
_CUE_MATCH: Final = _CUE_RE.match
# Cheap tests before the set look-up (which hashes a new slice): first letter, one bit per a-z; length.
_CUE_FIRST_BITS: Final = sum(1 << (c - 97) for c in {ord(w[0]) for w in _CUE_FIRST_WORDS})
_CUE_MAX_LEN: Final = max(len(w) for w in _CUE_FIRST_WORDS)


def _cue_matches(lower: str) -> list[re.Match[str]]:
    """`_CUE_RE.finditer(lower)`, with the regex tried only at a word (a run of a-z) that may start a
    cue: every alternative starts with a whole word of _CUE_FIRST_WORDS (`finditer` enters the matcher
    at every position, and each entry walks the word lists)."""
    out: list[re.Match[str]] = []
    i = 0
    n = len(lower)
    while i < n:
        o = ord(lower[i])
        if not 97 <= o <= 122:
            i += 1
            continue
        j = i + 1
        while j < n and 97 <= ord(lower[j]) <= 122:
            j += 1
        if j - i <= _CUE_MAX_LEN and (_CUE_FIRST_BITS >> (o - 97)) & 1 and lower[i:j] in _CUE_FIRST_WORDS:
            m = _CUE_MATCH(lower, i)
            if m is not None:
                out.append(m)
                i = m.end()
                continue
        i = j
    return out


def _pair_cue(first: str, second: str) -> Cue | None:
    cue = _BIGRAMS.get((first, second))
    if cue is None and first in _ID_HEADS and second in _ID_TAILS:
        cue = Cue.OTHER_ID
    return cue


def cue_index(text: str, lower: str | None = None) -> list[tuple[int, int, Cue]]:
    """Every cue in the text as (start, end, cue), in order; words inside "[CARD]"-style placeholders
    are not cues (so a second pass over redacted text sees what the first saw). `lower`: `text.lower()`
    if the caller has it."""
    if lower is None:
        lower = text.lower()
    if len(lower) != len(text):  # rare Unicode whose lower case changes length: keep offsets right
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    out: list[tuple[int, int, Cue]] = []
    for m in _cue_matches(lower):
        kind = m.lastgroup
        if kind == "word":
            out.append((m.start(), m.end(), _UNIGRAMS[m.group()]))
        elif kind == "pair":
            words = _SPLIT_RE.split(m.group())
            first, second = words[0], words[-1]
            if (cue := _pair_cue(first, second)) is not None:
                out.append((m.start(), m.end(), cue))
                continue
            # Two words that only look like a label ("american card"): each may still be a cue alone.
            if (c := _UNIGRAMS.get(first)) is not None and not (m.start() and lower[m.start() - 1] == "["):
                out.append((m.start(), m.start() + len(first), c))
            if (c := _UNIGRAMS.get(second)) is not None:
                out.append((m.end() - len(second), m.end(), c))
        else:
            s = m.start()
            prev = _LAST_WORD_RE.search(lower, max(0, s - 24), s)
            if prev is not None and prev.group(1) in _ASR_CARD and lower[prev.end(1) : s].isspace():
                # tiny.en's "car number" for "card number"
                out.append((prev.start(1), m.end(), Cue.CARD))
            elif (prev is None or prev.group(1) not in _NUMBER_NOT_AFTER) and not _OF_RE.match(
                lower, m.end()
            ):
                out.append((s, m.end(), Cue.PHONE))
    return out


class LazyCues:
    """`cue_index(text)`, computed on first use: most lines with numbers hold none long enough for an
    entity, and then no cue is needed."""

    __slots__ = ("_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._value: list[tuple[int, int, Cue]] | None = None

    def get(self) -> list[tuple[int, int, Cue]]:
        if self._value is None:
            self._value = cue_index(self.text)
        return self._value


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

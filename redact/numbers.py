"""Spoken and written number tokens in ASR output, grouped the way a speaker groups digits.

Whisper writes "404-555-oh one five nine", "double five five, 0131" and "Two oh one. Five five five." for
the same kind of number, so recognisers work on a normalised stream instead of on characters:

* `tokenize()` yields `NumToken`s: a digit run ("404", "415.555.0163", "+44") or a spoken number word
  ("oh" -> "0", "double five" -> "55", "thirty-two" -> "32", "eight hundred" -> "800"). Tokens that are
  clearly not part of an identifier (times, dates, prices, decimals, ordinals, quantities with a unit) are
  kept but marked `blocked`, so they break a sequence instead of joining it.
* `group()` joins tokens separated only by spaces, hyphens or parentheses into `Group`s (a speaker's
  digit group) and labels the gap to the next group: `LOOSE` (comma, "...", fillers like "um"/"sorry"),
  `SENTENCE` (". " - the ASR split one number into short sentences) or `BREAK`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

DIGIT_WORDS: dict[str, str] = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
TEENS: dict[str, str] = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
TENS: dict[str, str] = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
NUMBER_WORDS = frozenset([*DIGIT_WORDS, *TEENS, *TENS, "hundred", "thousand", "double", "triple"])

_DW = "|".join(DIGIT_WORDS)
_DW_NZ = "|".join(w for w in DIGIT_WORDS if w not in ("zero", "oh"))

_TOKEN_RE = re.compile(
    rf"""
    (?P<lit>\+?\d+(?:[.,:/]\d+)*)
    |\b(?P<mult>double|triple)[\s-]+(?P<mw>{_DW})\b
    |\b(?P<tens>{"|".join(TENS)})(?:[\s-]+(?P<tu>{_DW_NZ}))?\b
    |\b(?P<teen>{"|".join(TEENS)})\b
    |\b(?P<dw>{_DW})(?:[\s-]+(?P<hund>hundred|thousand))?\b
    |\b(?P<plus>plus)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)

# A quantity, not an identifier: "20 mg", "87 years", "3 p.m.", "5 foot 4", "10 days".
UNITS = frozenset(
    """mg milligram milligrams mcg microgram micrograms g gram grams kg kilo kilos lb lbs pound pounds
    ml milliliter milliliters cc unit units tablet tablets pill pills capsule capsules dose doses puff
    puffs drop drops shot shots year years yr yrs month months week weeks day days hour hours hr hrs
    minute minutes min mins second seconds time times percent degree degrees foot feet ft inch inches
    a.m p.m am pm o'clock dollar dollars buck bucks cent cents refill refills bottle bottles box boxes
    mmhg bpm step steps calorie calories ounce ounces oz liter liters bed beds visit visits session
    sessions more percentile kids children people patients miles mile blocks floors cups glasses point
    and-a-half""".split()
)
# The word before a group says it is not a phone/card: "room 214", "press 2", "zip 30305", "extension 4412".
PRE_BLOCK = frozenset(
    """room rooms suite floor unit apartment apt bed building zip zipcode postal page step level grade
    size version gate exit route highway interstate lot box chapter question press extension ext age
    aged ages dial-in item items row seat aisle bay dock platform channel window counter station booth
    lane tier stage class""".split()
)

_FILLER = (
    r"(?:um+|uh+|uhm|er+|erm|ah+|hmm+|mm+|sorry|let\s+me\s+see|let\s+me\s+think|let's\s+see|"
    r"i\s+mean|hold\s+on|wait|one\s+sec(?:ond)?|like)"
)
_TIGHT_RE = re.compile(r"[ \t]{0,3}(?:-[ \t]{0,2})?|[ \t]?\([ \t]?|\)[ \t]?-?[ \t]?|[ \t]+\)[ \t]?")
_LOOSE_RE = re.compile(
    rf"\s*(?:,|\.\.\.+|…|;|--|—|–|-)?\s*(?:{_FILLER}\s*(?:,|\.\.\.+|…|--|—)?\s*)*",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(rf"\s*[.?!]\s+(?:{_FILLER}\s*[,.]*\s*)*", re.IGNORECASE)
_NEXT_WORD_RE = re.compile(r"[ \t]*-?[ \t]*([A-Za-z][A-Za-z.']*)")
_PREV_WORD_RE = re.compile(r"([A-Za-z][A-Za-z-]*)[\s#:.]*$")


class Link(Enum):
    """How a group is joined to the next one."""

    LOOSE = "loose"
    SENTENCE = "sentence"
    BREAK = "break"


@dataclass(slots=True)
class NumToken:
    start: int
    end: int
    digits: str
    spoken: bool
    blocked: bool = False
    plus: bool = False  # a leading "+" or the word "plus"
    lone_oh: bool = False


@dataclass(slots=True)
class Group:
    start: int
    end: int
    digits: str
    tokens: list[NumToken] = field(default_factory=list)
    intl: bool = False
    blocked: bool = False
    link: Link = Link.BREAK  # link to the next group


def _spoken_digits(m: re.Match[str]) -> str:
    if m.group("mult"):
        times = 2 if m.group("mult").lower() == "double" else 3
        return DIGIT_WORDS[m.group("mw").lower()] * times
    if m.group("tens"):
        unit = m.group("tu")
        return TENS[m.group("tens").lower()] + (DIGIT_WORDS[unit.lower()] if unit else "0")
    if m.group("teen"):
        return TEENS[m.group("teen").lower()]
    digit = DIGIT_WORDS[m.group("dw").lower()]
    hund = m.group("hund")
    if hund:
        return digit + ("00" if hund.lower() == "hundred" else "000")
    return digit


def _literal(text: str, m: re.Match[str]) -> NumToken:
    raw = m.group("lit")
    plus = raw.startswith("+")
    body = raw.lstrip("+")
    tok = NumToken(m.start(), m.end(), body, spoken=False, plus=plus)
    if any(c in body for c in ":/,"):
        tok.blocked = True  # time, date, 1,000
    elif "." in body:
        parts = body.split(".")
        # 415.555.0163 / 1.800.555.0144 are phones; 101.4 and 6.9 are measurements.
        if len(parts) >= 3 and sum(map(len, parts)) >= 7:
            tok.digits = "".join(parts)
        else:
            tok.blocked = True
    before = text[m.start() - 1] if m.start() > 0 else " "
    after = text[m.end()] if m.end() < len(text) else " "
    if before in "$£€#%" or after in "%°" or (after.isalpha() and after not in "xX"):
        tok.blocked = True  # $45, 14th, 5mg
    elif before.isalpha() and len(tok.digits) < 10:
        tok.blocked = True  # A1C, B12
    return tok


def _unit_follows(text: str, end: int) -> bool:
    m = _NEXT_WORD_RE.match(text, end)
    return bool(m) and m.group(1).lower().rstrip(".") in UNITS


def tokenize(text: str) -> list[NumToken]:
    tokens: list[NumToken] = []
    for m in _TOKEN_RE.finditer(text):
        if m.group("plus"):
            tokens.append(NumToken(m.start(), m.end(), "", spoken=True, plus=True))
            continue
        if m.group("lit"):
            tok = _literal(text, m)
        else:
            tok = NumToken(m.start(), m.end(), _spoken_digits(m), spoken=True)
            tok.lone_oh = m.group("dw") is not None and m.group(0).lower() == "oh"
        if not tok.blocked and _unit_follows(text, tok.end):
            tok.blocked = True
        tokens.append(tok)
    return tokens


def _gap_link(gap: str) -> Link | None:
    """None: tight (same group); otherwise how two groups are linked."""
    if _TIGHT_RE.fullmatch(gap):
        return None
    if _LOOSE_RE.fullmatch(gap):
        return Link.LOOSE
    if _SENTENCE_RE.fullmatch(gap):
        return Link.SENTENCE
    return Link.BREAK


def group(text: str, tokens: list[NumToken] | None = None) -> list[Group]:
    """Join tokens into digit groups; see the module docstring."""
    toks = tokenize(text) if tokens is None else tokens
    groups: list[Group] = []
    cur: Group | None = None
    pending_plus: NumToken | None = None
    prev_end = -1
    for tok in toks:
        link = _gap_link(text[prev_end:tok.start]) if prev_end >= 0 else Link.BREAK
        if tok.plus and not tok.digits:  # the word "plus": a prefix for the next group
            if cur is not None:
                cur.link = Link.BREAK
            cur, pending_plus, prev_end = None, tok, tok.end
            continue
        if tok.blocked:
            if cur is not None:
                cur.link = Link.BREAK
            cur, pending_plus, prev_end = None, None, tok.end
            continue
        if cur is not None and link is None:
            cur.tokens.append(tok)
            cur.end = tok.end
            cur.digits += tok.digits
        else:
            if cur is not None:
                cur.link = link if link is not None else Link.BREAK
            cur = Group(tok.start, tok.end, tok.digits, [tok], intl=tok.plus)
            if pending_plus is not None and link is None:
                cur.start, cur.intl = pending_plus.start, True
            elif tok.start > 0 and text[tok.start - 1] == "(":
                cur.start -= 1
            groups.append(cur)
            pending_plus = None
        prev_end = tok.end
    for g in groups:
        if len(g.tokens) == 1 and g.tokens[0].lone_oh:
            g.blocked = True  # "Oh, I see" - an interjection, not a zero
        m = _PREV_WORD_RE.search(text, max(0, g.start - 30), g.start)
        if m and m.group(1).lower() in PRE_BLOCK:
            g.blocked = True
    return groups

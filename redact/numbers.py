"""Spoken and written number tokens in ASR output, grouped the way a speaker groups digits.

Whisper writes "404-555-oh one five nine", "double five five, 0131" and "Two oh one. Five five five." for
the same kind of number, so recognisers work on a normalised stream instead of on characters:

* `tokenize()` yields `NumToken`s: a digit run ("404", "415.555.0163", "+44") or a spoken number word
  ("oh" -> "0", "double five" -> "55", "thirty-two" -> "32", "eight hundred" -> "800"). Tokens that are
  clearly not part of an identifier (times, dates, prices, decimals, ordinals, quantities with a unit) are
  kept but marked `blocked`, so they break a sequence instead of joining it. A run with thousands
  separators ("4,567": Whisper's way with digits it heard as a number) is `soft`: digits when glued to
  other groups ("555-123-4,567"), otherwise a quantity unless the context says phone or card
  (`redact.fallback`).
* `group()` joins tokens separated only by spaces, hyphens or parentheses into `Group`s (a speaker's
  digit group) and labels the gap to the next group: `LOOSE` (comma, "...", fillers like "um"/"sorry"),
  `SENTENCE` (". " - the ASR split one number into short sentences) or `BREAK`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Final

DIGIT_WORDS: Final[dict[str, str]] = {
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
TEENS: Final[dict[str, str]] = {
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
TENS: Final[dict[str, str]] = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
# What tiny.en writes for a digit word it mishears fast ("free" for three, "won" for one): digits only
# between two digits of one run ("two two two four oh oh free one"), else the ordinary word.
WEAK_WORDS: Final[dict[str, str]] = {
    "free": "3",
    "fine": "5",
    "for": "4",
    "won": "1",
    "ate": "8",
    "to": "2",
    "too": "2",
}
NUMBER_WORDS: Final = frozenset([*DIGIT_WORDS, *TEENS, *TENS, "hundred", "thousand", "double", "triple"])


class _AsciiDigits(dict[int, str]):
    """A `str.translate` table, filled on demand: a Unicode decimal digit -> its ASCII digit."""

    def __missing__(self, cp: int) -> str:
        value = unicodedata.decimal(chr(cp), None)
        if value is None:
            raise KeyError(cp)  # not a digit: translate() keeps it
        self[cp] = digit = str(value)
        return digit


_ASCII_DIGITS = _AsciiDigits()


def ascii_digits(s: str) -> str:
    """`s` with every decimal digit `\\d` matches (Arabic-Indic, fullwidth, Devanagari, ...) written as
    its ASCII digit, so that lengths, Luhn checks and shape rules see the number the way a reader does."""
    return s if s.isascii() else s.translate(_ASCII_DIGITS)


_JOINER: Final = " \t-"

# A quantity, not an identifier: "20 mg", "87 years", "3 p.m.", "5 foot 4", "10 days".
UNITS: Final = frozenset(
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
PRE_BLOCK: Final = frozenset(
    """room rooms suite floor unit apartment apt bed building zip zipcode postal page step level grade
    size version gate exit route highway interstate lot box chapter question press extension ext age
    aged ages dial-in item items row seat aisle bay dock platform channel window counter station booth
    lane tier stage class""".split()
)

_FILLER = (
    r"(?:um+|uh+|uhm|er+|erm|ah+|hmm+|mm+|sorry|let\s+me\s+see|let\s+me\s+think|let's\s+see|"
    r"i\s+mean|hold\s+on|wait|one\s+sec(?:ond)?|like)\b"
)  # "\b": "mmmm" is one filler, not "mm" + "mm" (else trying every split takes exponential time)
_TIGHT_RE = re.compile(
    r"[ \t]{0,3}(?:-[ \t]{0,2})?|[ \t]?\([ \t]?|\)[ \t]?-?[ \t]?|[ \t]+\)[ \t]?|[ \t]+(?:dash|hyphen)[ \t]+",
    re.IGNORECASE,
)
_LOOSE_RE = re.compile(
    rf"\s*(?:(?:,|\.\.\.+|…|;|--|—|\u2013|-)\s*)?(?:{_FILLER}\s*(?:(?:,|\.\.\.+|…|--|—)\s*)?)*",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(rf"\s*[.?!]\s+(?:{_FILLER}\s*(?:[,.]+\s*)?)*", re.IGNORECASE)
# Each part of the gap patterns above can match in one way only (a space after a filler belongs to the
# first "\s*", the second needs punctuation first): a long gap that does not match fails in linear time.


class Link(Enum):
    """How a group is joined to the next one."""

    LOOSE = "loose"
    SENTENCE = "sentence"
    BREAK = "break"


# Dataclasses for their __eq__ and __repr__ (tests), with the __init__ written out: mypyc compiles the
# methods in the source, while those dataclass generates run interpreted (a constructor call cost ten
# times the rest of a token's work).
@dataclass(slots=True)
class NumToken:
    start: int
    end: int
    digits: str
    spoken: bool
    blocked: bool = False
    plus: bool = False  # a leading "+" or the word "plus"
    lone_oh: bool = False
    weak: bool = False  # a word of WEAK_WORDS: a digit only between two digits (`_resolve_weak`)
    soft: bool = False  # "4,567": thousands separators, a quantity unless glued to other digit groups

    def __init__(
        self,
        start: int,
        end: int,
        digits: str,
        spoken: bool,
        blocked: bool = False,
        plus: bool = False,
        lone_oh: bool = False,
        weak: bool = False,
        soft: bool = False,
    ) -> None:
        self.start = start
        self.end = end
        self.digits = digits
        self.spoken = spoken
        self.blocked = blocked
        self.plus = plus
        self.lone_oh = lone_oh
        self.weak = weak
        self.soft = soft


@dataclass(slots=True)
class Group:
    start: int
    end: int
    digits: str
    tokens: list[NumToken] = field(default_factory=list)
    intl: bool = False
    blocked: bool = False
    link: Link = Link.BREAK  # link to the next group
    soft: bool = False  # blocked only for want of context: every token is soft ("4,567", "1,011,111")

    def __init__(
        self,
        start: int,
        end: int,
        digits: str,
        tokens: list[NumToken] | None = None,
        intl: bool = False,
        blocked: bool = False,
        link: Link = Link.BREAK,
        soft: bool = False,
    ) -> None:
        self.start = start
        self.end = end
        self.digits = digits
        self.tokens = [] if tokens is None else tokens
        self.intl = intl
        self.blocked = blocked
        self.link = link
        self.soft = soft


class Hit:
    """One match of the number scan: `word` is lower[start:end] (what `_SCAN_RE` matched). A native
    class, not the regex's Match: every read of a Match is a method call through the interpreter."""

    __slots__ = ("end", "start", "word")

    def __init__(self, start: int, end: int, word: str) -> None:
        self.start: Final = start
        self.end: Final = end
        self.word: Final = word

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return self.start == other.start and self.end == other.end and self.word == other.word

    def __hash__(self) -> int:
        return hash((self.start, self.end, self.word))

    def __repr__(self) -> str:
        return f"Hit({self.start!r}, {self.end!r}, {self.word!r})"


def _hit(m: re.Match[str]) -> Hit:
    s, e = m.span()
    return Hit(s, e, m.group())


def _literal(text: str, m: Hit) -> NumToken:
    raw = m.word
    plus = raw.startswith("+")
    body = raw.lstrip("+")
    tok = NumToken(m.start, m.end, body, spoken=False, plus=plus)
    if ":" in body or "/" in body:
        tok.blocked = True  # time, date
    elif "," in body:
        # Whisper groups digits it hears as a number with thousands separators: "555-123-4,567". Alone it
        # is a quantity ("1,250"); glued to other digit groups or in phone/card context it is digits.
        if "." in body:
            tok.blocked = True  # 1,250.50
        else:
            tok.digits, tok.soft = body.replace(",", ""), True
    elif "." in body:
        parts = body.split(".")
        # 415.555.0163 / 1.800.555.0144 are phones; 101.4 and 6.9 are measurements.
        if len(parts) == 3 and len(parts[0]) <= 2 and len(parts[1]) <= 2 and len(parts[2]) in (2, 4):
            tok.blocked = True  # 03.04.2024: a date
        elif len(parts) >= 3 and sum(map(len, parts)) >= 7:
            tok.digits = "".join(parts)
        elif max(map(len, parts)) < 10:
            # 101.4 and 6.9 are measurements, but Whisper also writes digit pairs it hears fast as
            # decimals ("reach me at 5.5, 4.3, 2, 1.0, 0.8"): soft, as for thousands separators.
            tok.digits, tok.soft = "".join(parts), True
        else:
            tok.blocked = True  # "12.5551234567": the run is redacted alone (`redact.pipeline`)
    before = text[m.start - 1] if m.start > 0 else " "
    after = text[m.end] if m.end < len(text) else " "
    if before in "$£€#%" or after in "%°" or (after.isalpha() and after not in "xX"):
        tok.blocked = True  # $45, 14th, 5mg
    elif before.isalpha() and len(tok.digits) < 10:
        tok.blocked = True  # A1C, B12
    tok.digits = ascii_digits(tok.digits)
    return tok


def trie(words: list[str]) -> str:
    """A regex alternation of `words` factored by first letter ("t(?:h(?:ree|irty|...)|...)"): the
    engine drops a position after one character test instead of trying every word there."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        by_first.setdefault(w[0], []).append(w[1:])
    parts = []
    for first, rests in sorted(by_first.items()):
        tails = [r for r in rests if r]
        if not tails:
            parts.append(re.escape(first))
            continue
        parts.append(re.escape(first) + "(?:" + trie(tails) + ")" + ("?" if "" in rests else ""))
    return "|".join(parts)


_SCAN_WORDS = [*DIGIT_WORDS, *TEENS, *TENS, *WEAK_WORDS, "double", "triple", "plus", "hundred", "thousand"]
# A digit run or a number word. Each alternative starts with a character (class), and a word must not
# follow a word character ("(?<!\w)", which is "\b" there): the engine leaves a position inside a word
# after one test instead of walking the word list.
_SCAN = r"\d+(?:[.,:/]\d+)*|\+\d+(?:[.,:/]\d+)*|(?<!\w)(?:" + trie(_SCAN_WORDS) + r")\b"
# Run on lower-cased text: without IGNORECASE the engine skips positions that cannot start a match.
_SCAN_RE = re.compile(_SCAN)
_SCAN_RE_I = re.compile(_SCAN, re.IGNORECASE)  # when lower() would change the length (rare Unicode)
# The word right after a short number, for the unit check ("20 mg", "10 days").
_NEXT_WORD_RE: Final = re.compile(r"[ \t]*-?[ \t]*([A-Za-z][A-Za-z.']*)")


def _spoken(w: str, nxt: str) -> tuple[str, int]:
    """Digits of spoken word `w` (joined to `nxt` by a space or hyphen, or nxt == ""), words used."""
    if w in DIGIT_WORDS:
        if nxt in ("hundred", "thousand"):  # "eight hundred" (toll-free 800)
            return DIGIT_WORDS[w] + ("00" if nxt == "hundred" else "000"), 2
        return DIGIT_WORDS[w], 1
    if w in TEENS:
        return TEENS[w], 1
    if w in TENS:
        if nxt in DIGIT_WORDS and nxt not in ("zero", "oh"):  # "thirty-two"
            return TENS[w] + DIGIT_WORDS[nxt], 2
        return TENS[w] + "0", 1
    if w in WEAK_WORDS:
        return WEAK_WORDS[w], 1
    if w in ("double", "triple") and nxt in DIGIT_WORDS:
        return DIGIT_WORDS[nxt] * (2 if w == "double" else 3), 2
    return "", 0


# Final: mypyc reads these as C statics (a module dict look-up per character cost more than the rest).
_SCAN_WORD_SET: Final = frozenset(_SCAN_WORDS)
# Cheap tests before the set look-up (which hashes a new slice): first letter, one bit per a-z; length.
_SCAN_FIRST_BITS: Final = sum(1 << (c - 97) for c in {ord(w[0]) for w in _SCAN_WORDS})
_SCAN_MAX_LEN: Final = max(len(w) for w in _SCAN_WORDS)
_SCAN_MATCH: Final = _SCAN_RE.match


def _word_char_at(lower: str, j: int) -> bool:
    """Whether lower[j] is a "\\w" character (False past the end)."""
    if j >= len(lower):
        return False
    o = ord(lower[j])
    if o < 128:
        return 97 <= o <= 122 or 48 <= o <= 57 or o == 95 or 65 <= o <= 90
    return lower[j].isalnum() or lower[j] == "_"


def _ascii_digit_at(lower: str, j: int) -> bool:
    return j < len(lower) and 48 <= ord(lower[j]) <= 57


def scan(lower: str) -> list[Hit]:
    """The digit runs and number words of `lower` (a text's lower case of the same length), in order.

    The same matches as `_SCAN_RE.finditer(lower)`, found without entering the regex engine for the
    common cases: a run of letters is a number word when it is one of _SCAN_WORDS, follows no ASCII word
    character and no word character follows it (the pattern's "(?<!\\w)" and "\\b"); an ASCII digit run
    with ".,:/" between digits is one hit. The regex decides the rest (a "+", anything not ASCII, an
    ASCII run that a non-ASCII character continues). `finditer` entered the matcher at every position,
    and each Match read costs a call through the interpreter."""
    out: list[Hit] = []
    i = 0
    n = len(lower)
    while i < n:
        o = ord(lower[i])
        if 97 <= o <= 122:
            j = i + 1
            while j < n and 97 <= ord(lower[j]) <= 122:
                j += 1
            if (
                2 <= j - i <= _SCAN_MAX_LEN
                and (_SCAN_FIRST_BITS >> (o - 97)) & 1
                and not (i and _word_char_at(lower, i - 1))
                and not _word_char_at(lower, j)
            ):
                word = lower[i:j]
                if word in _SCAN_WORD_SET:
                    out.append(Hit(i, j, word))
            i = j  # no match starts inside a run of letters
            continue
        if 48 <= o <= 57:
            j = i + 1
            while True:
                while j < n and 48 <= ord(lower[j]) <= 57:
                    j += 1
                if j + 1 < n and lower[j] in ".,:/" and _ascii_digit_at(lower, j + 1):
                    j += 2
                    continue
                break
            if (j < n and ord(lower[j]) > 127) or (
                j + 1 < n and lower[j] in ".,:/" and ord(lower[j + 1]) > 127
            ):
                m = _SCAN_MATCH(lower, i)  # a non-ASCII digit may continue the run: the regex decides
                if m is not None:
                    out.append(_hit(m))
                    i = m.end()
                    continue
            else:
                out.append(Hit(i, j, lower[i:j]))
                i = j
                continue
        elif o == 43 or o > 127:
            m = _SCAN_MATCH(lower, i)
            if m is not None:
                out.append(_hit(m))
                i = m.end()
                continue
        i += 1
    return out


def hint(matches: list[Hit]) -> int:
    """At most how many digits the matches of `scan` can give: a run its length (separators counted,
    an upper bound), a word two ("twenty" -> 20; "eight thousand" is two words)."""
    n = 0
    for m in matches:
        first = m.word[0]
        if first.isdigit() or first == "+":
            n += m.end - m.start
        else:
            n += 1 if m.word in WEAK_WORDS else 2
    return n


def _next_word(s: str, pos: int) -> str:
    """What group 1 of `_NEXT_WORD_RE.match(s, pos)` holds ("" if no match), without the regex: the
    word after spaces or tabs and at most one hyphen."""
    n = len(s)
    i = pos
    while i < n and s[i] in " \t":
        i += 1
    if i < n and s[i] == "-":
        i += 1
        while i < n and s[i] in " \t":
            i += 1
    if i >= n or not _is_ascii_letter(ord(s[i])):
        return ""
    j = i + 1
    while j < n:
        o = ord(s[j])
        if not (_is_ascii_letter(o) or o == 46 or o == 39):  # letters, ".", "'"
            break
        j += 1
    return s[i:j]


def _is_ascii_letter(o: int) -> bool:
    return 97 <= o <= 122 or 65 <= o <= 90


def tokenize(text: str, matches: list[Hit] | None = None) -> list[NumToken]:
    """`matches`: `scan(text.lower())` if the caller has it (and the lower case keeps the length)."""
    tokens: list[NumToken] = []
    lower = text.lower()
    if len(lower) != len(text):
        lower, matches = text, [_hit(m) for m in _SCAN_RE_I.finditer(text)]
    elif matches is None:
        matches = scan(lower)
    k, n, size = 0, len(matches), len(text)
    while k < n:
        m = matches[k]
        s, e = m.start, m.end
        w = m.word
        if w.isdigit():  # the common case, inlined: a plain digit run
            tok = NumToken(s, e, w if w.isascii() else ascii_digits(w), False)
            before = text[s - 1] if s else " "
            after = text[e] if e < size else " "
            if before in "$£€#%" or after in "%°" or (after.isalpha() and after not in "xX"):
                tok.blocked = True  # $45, 14th, 5mg
            elif before.isalpha() and len(w) < 10:
                tok.blocked = True  # A1C, B12
            k += 1
            last = m
        elif w[0].isdigit() or w[0] == "+":
            tok = _literal(text, m)
            k += 1
            last = m
        elif w == "plus":
            tokens.append(NumToken(s, e, "", True, False, True))
            k += 1
            continue
        else:
            w = w.lower()
            nxt = ""
            if k + 1 < n:
                nm = matches[k + 1]
                gap = text[e : nm.start]
                if gap and not gap.strip(_JOINER):
                    nxt = nm.word.lower()
            digits, used = _spoken(w, nxt)
            if not used:
                k += 1
                continue
            last = matches[k + used - 1]
            tok = NumToken(s, last.end, digits, True, False, False, used == 1 and w == "oh")
            tok.weak = w in WEAK_WORDS
            k += used
        if not tok.blocked and len(tok.digits) < 7:  # "10 days", "20 mg": a quantity
            if k < n and (gap := text[last.end : matches[k].start]) and not gap.strip(_JOINER):
                tokens.append(tok)  # the next word is a number ("five five"), not a unit
                continue
            if _next_word(lower, last.end).lower().rstrip(".") in UNITS:
                tok.blocked = True
        tokens.append(tok)
    return _resolve_weak(text, tokens) if any(t.weak for t in tokens) else tokens


def _digit_neighbour(tok: NumToken) -> bool:
    return bool(tok.digits) and not tok.blocked and not tok.weak


def _resolve_weak(text: str, tokens: list[NumToken]) -> list[NumToken]:
    """Keep a run of WEAK_WORDS tokens between two digit tokens of one number ("oh one for two", "5 won
    0 5", commas or fillers between allowed) or in a cued run of digit words (`_cued_weak`); elsewhere
    "for"/"to"/"fine" are words."""
    out: list[NumToken] = []
    cued = _cued_weak(text, tokens)
    i, n = 0, len(tokens)
    while i < n:
        if not tokens[i].weak:
            out.append(tokens[i])
            i += 1
            continue
        j = i
        while j + 1 < n and tokens[j + 1].weak:
            j += 1
        keep = i > 0 and j + 1 < n and _digit_neighbour(tokens[i - 1]) and _digit_neighbour(tokens[j + 1])
        if keep:
            for a in range(i - 1, j + 1):
                link = _link(text[tokens[a].end : tokens[a + 1].start])
                if link is Link.BREAK or link is Link.SENTENCE:
                    keep = False
                    break
        if keep:
            out.extend(tokens[i : j + 1])
        else:
            out.extend(tokens[k] for k in range(i, j + 1) if k in cued)
        i = j + 1
    return out


# Words right before a digit run that say a number is being read: a phone or card word, with the ASR's
# spellings of "card number" ("car number", "cart number"), "number", or "call/text/reach (me) at",
# then "is"/"was" and fillers.
_RUN_CUE_RE: Final = re.compile(
    r"(?<![a-z])(?:(?:phone|cell|mobile|card|fax|visa|mastercard)(?:\s+number)?|(?:car|cart)\s+number|number"
    r"|(?:call|text|reach|dial)(?:\s+(?:me|us|her|him|them))?(?:\s+back)?(?P<at>\s+(?:at|on))?)"
    r"(?P<link>\s+(?:is|was|it's)|\s*:)?[\s,]*(?:(?:um+|uh+)[\s,]*)?$",
    re.IGNORECASE,
)
_RUN_CUE_REACH: Final = 40  # characters before a run that may hold its cue
_MIN_MIXED_RUN = 4  # digit words, homophones among them
_PREPOSITIONS: Final = frozenset(("to", "for"))


def _is_preposition(text: str, tok: NumToken) -> bool:
    return tok.weak and text[tok.start : tok.end].lower() in _PREPOSITIONS


_MIN_SAME_RUN = 6  # one homophone said again and again, commas between ("fine, fine, fine, ...")


def _cued_weak(text: str, tokens: list[NumToken]) -> set[int]:
    """Indices of WEAK_WORDS tokens that are digits because of the run they are in (fail safe): after
    a number cue, a run of digit tokens and homophones linked by spaces, commas or fillers that holds
    at least _MIN_MIXED_RUN tokens with a real digit among them ("number is free won fine six"), or
    _MIN_SAME_RUN times the same homophone with commas between (tiny.en's "The car number is fine,
    fine, fine, ..." for a card read as fives). Without the cue, "for four weeks", "fine, fine, thank
    you" and "two to three times a day" stay words."""
    cued: set[int] = set()
    i, n = 0, len(tokens)
    while i < n:
        if not tokens[i].digits or tokens[i].blocked:
            i += 1
            continue
        j, commas = i, True
        while j + 1 < n and tokens[j + 1].digits and not tokens[j + 1].blocked:
            gap = text[tokens[j].end : tokens[j + 1].start]
            link = _link(gap)
            if link is Link.BREAK or link is Link.SENTENCE:
                break
            commas = commas and "," in gap
            j += 1
        # "call 1-800-555-0199 to activate": a "to"/"for" that ends the run is the word (the dev rules),
        # unless the run is nothing else ("for, for, for, ...").
        hi = j
        while hi > i and _is_preposition(text, tokens[hi]):
            hi -= 1
        if hi == i and _is_preposition(text, tokens[i]):
            hi = j
        commas = commas and all("," in text[tokens[k].end : tokens[k + 1].start] for k in range(i, hi))
        j = hi
        size = j - i + 1
        weak = [k for k in range(i, j + 1) if tokens[k].weak] if size >= _MIN_MIXED_RUN else []
        cue = None
        if weak:
            cue = _RUN_CUE_RE.search(text, max(0, tokens[i].start - _RUN_CUE_REACH), tokens[i].start)
        if (
            cue is not None
            and not cue.group("link")
            and not cue.group("at")
            and _is_preposition(text, tokens[i])
        ):
            cue = (
                None  # "update my phone to 212 ...": "to" after a cue noun is a word; after "is"/"at" a digit
            )
        if cue is not None:
            mixed = len(weak) < size
            same = (
                not mixed
                and size >= _MIN_SAME_RUN
                and commas
                and len({text[tokens[k].start : tokens[k].end].lower() for k in weak}) == 1
            )
            if mixed or same:
                cued.update(weak)
        i = j + 1
    return cued


def _link(gap: str) -> Link | None:
    """`gap_link`, with the commonest gaps answered before the cache's interpreted wrapper."""
    if gap == " " or gap == "-":
        return None
    if gap == ", ":
        return Link.LOOSE
    return gap_link(gap)


@lru_cache(maxsize=4096)
def gap_link(gap: str) -> Link | None:
    """None: tight (same group); otherwise how two groups are linked."""
    if _TIGHT_RE.fullmatch(gap):
        return None
    if _LOOSE_RE.fullmatch(gap):
        return Link.LOOSE
    if _SENTENCE_RE.fullmatch(gap):
        return Link.SENTENCE
    return Link.BREAK


def _zip_plus_four(text: str, toks: list[NumToken]) -> bool:
    """ "30305-1234": five digits, a hyphen, four digits, written; no phone or card has that shape."""
    return (
        len(toks) == 2
        and not toks[0].spoken
        and not toks[1].spoken
        and len(toks[0].digits) == 5
        and len(toks[1].digits) == 4
        and text[toks[0].end : toks[1].start] == "-"
    )


def _oh_in_digits(groups: list[Group], i: int) -> bool:
    """A lone "oh" read among digits said one per comma ("five five five, oh, two, oh, nine") is a zero:
    a one-digit group (or another such "oh") comes right before it, or it sits between two digit groups."""
    if i == 0 or groups[i - 1].link is not Link.LOOSE:
        return False
    prev = groups[i - 1]
    return len(prev.digits) == 1 or (groups[i].link is Link.LOOSE and i + 1 < len(groups))


def group(text: str, tokens: list[NumToken] | None = None, matches: list[Hit] | None = None) -> list[Group]:
    """Join tokens into digit groups; see the module docstring. `matches`: as for `tokenize`."""
    toks = tokenize(text, matches) if tokens is None else tokens
    groups: list[Group] = []
    cur: Group | None = None
    pending_plus: NumToken | None = None
    prev_end = -1
    for tok in toks:
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
        gap = text[prev_end : tok.start] if prev_end >= 0 else None
        # A space or a hyphen (most gaps inside a number) is tight; skip the cache look-up for them.
        link = None if gap == " " or gap == "-" else gap_link(gap) if gap is not None else Link.BREAK
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
    for i, g in enumerate(groups):
        toks = g.tokens
        if len(toks) == 1 and toks[0].lone_oh and not _oh_in_digits(groups, i):
            g.blocked = True  # "Oh, I see" - an interjection, not a zero
            continue
        before = text[max(0, g.start - 30) : g.start].rstrip(" \t#:.").rsplit(None, 1)
        if before and before[-1].lower() in PRE_BLOCK:
            g.blocked = True
        elif _zip_plus_four(text, toks):
            g.blocked = True
        elif toks[0].soft and all(t.soft for t in toks):
            g.blocked = g.soft = True  # "1,250" alone: a quantity unless the context says phone or card
    return groups

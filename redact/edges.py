"""Where an utterance may cut an entity: an open end ("... my number is 555", "write to reception"), the
start of a continuation ("at example dot org", "4567"), and their fail-safe over-redaction. Pure regexes
over one utterance's text, linear time on any input; `redact.hold` decides what to do with them."""

import re
from collections.abc import Callable
from dataclasses import dataclass

RedactOne = Callable[[str], tuple[str, dict[str, int]]]  # text -> (redacted text, placeholder counts)
Result = tuple[str, dict[str, int]]

TAIL_WINDOW = 200  # characters of an utterance's end searched for an open entity (the longest is ~100)

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")
TRAIL = re.compile(r"[\s.,;:!?\u2026]+$")
LEAD = re.compile(r"^[\s.,;:!?\u2026\"']+")

_DIGIT_WORDS = (
    "zero|oh|o|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "double|triple"
)
_NUM = rf"(?:\d+(?:[./]\d+)*|(?:{_DIGIT_WORDS})\b)"  # "-" only between tokens: no ambiguous backtracking
_NUM_RUN = rf"{_NUM}(?:[\s,\-]+{_NUM})*"
# A run may start with digits glued to a word: the ASR writes "at one three" as "aton3".
_NUM_TAIL = re.compile(rf"(?:(?<![\w\]])(?:\+\s*)?|(?<=[a-z])(?=\d)){_NUM_RUN}$", re.IGNORECASE)
_NUM_HEAD = re.compile(rf"^(?:\+\s*)?{_NUM_RUN}(?![\w\[])", re.IGNORECASE)
_NUMBER_CUE = re.compile(
    r"\b(?:phone|number|call|reach|cell|mobile|fax|text|card|visa|mastercard|amex|credit|debit|digits?|"
    r"extension|ext|account)\b",
    re.IGNORECASE,
)
_CARD_CUE = re.compile(r"\b(?:card|visa|mastercard|amex|credit|debit)\b", re.IGNORECASE)

_WORD = r"[a-z0-9][a-z0-9'\-]*"  # no '.' or '_': those are _JOIN's (no ambiguous backtracking)
_JOIN = r"(?:\s+(?:dot|underscore|dash|hyphen)\s+|[._])"
_NAME_DOT_NAME = rf"{_WORD}(?:{_JOIN}{_WORD})+"
_CONNECTOR = r"(?:at|dot|underscore|dash|hyphen|@|\.|_)"
_PROVIDERS = (
    r"g\s?mail|gmail|hot\s?mail|yahoo|outlook|aol|icloud|proton(?:\s?mail)?|live|msn|comcast|verizon|example"
)
_TLDS = r"com|org|net|edu|gov|io|us|co|info|biz|health|care"
_EMAIL_CUE = re.compile(r"\b(?:e-?\s?mail|address|write|send|mail)\b", re.IGNORECASE)
_STOP = re.compile(
    r"\b(?:the|a|an|my|your|our|their|his|her|this|that|it|them|you|me|us|him|and|or|but|so|please|"
    r"front|desk|office|home|work|clinic|pharmacy|doctor)\b",
    re.IGNORECASE,
)
# "... write to reception": an email lead-in, then at most three words of local part.
_EMAIL_LEAD_TAIL = re.compile(
    r"\b(?:e-?\s?mail(?:\s+address)?(?:\s+is|'s)?|address\s+is|write\s+(?:to|me\s+at)|(?P<weak>write\s+a)|"
    r"send\s+(?:it\s+|that\s+|them\s+|this\s+)?to|mail\s+(?:it\s+)?to|email\s+me\s+at)"
    r"(?P<span>(?:\s+[a-z0-9][a-z0-9'_.\-]*){0,4})$",
    re.IGNORECASE,
)
_NUMBER_LEAD_TAIL = re.compile(
    r"\b(?:(?:(?:phone|cell|mobile|fax|card|account)(?:\s+number)?|number)(?:\s+is|\s+it's|'s|:)|"
    r"(?:call|reach|text)\s+me\s+(?:at|on)|extension)$",
    re.IGNORECASE,
)
# "jane dot doe at", "doe at gmail", "sam.reyes", "sam dot reyes", "reyes at example dot".
_EMAIL_TAIL = re.compile(
    rf"(?:{_NAME_DOT_NAME}|{_WORD})(?:\s*(?:at|@)(?:\s*{_WORD}(?:{_JOIN}{_WORD})*)?)?(?:\s*{_CONNECTOR})?$",
    re.IGNORECASE,
)
_EMAIL_HEAD = re.compile(
    rf"^(?:(?:at|@|dot|underscore|dash|hyphen|\.|_)\s*)?(?:{_WORD}(?:{_JOIN}{_WORD})*)"
    rf"(?:\s*(?:at|@)\s*{_WORD}(?:{_JOIN}{_WORD})*)?",
    re.IGNORECASE,
)
# "at northfield clinic.org": a domain after "at" (several words, as the ASR writes them); alone, the rules
# read it as a web address and keep it, so it is over-redacted whatever came before.
_DOMAIN_HEAD = re.compile(
    rf"^(?:at\b|@)\s*(?:{_WORD}\s+){{0,3}}{_WORD}(?:\.|\s+dot\s+)(?:{_TLDS})\b", re.IGNORECASE
)
_CONTINUES = re.compile(
    rf"^(?:(?:dot|underscore|dash|hyphen)\b|[._]|(?:at\b|@)\s*(?:(?:{_PROVIDERS})\b|{_WORD}{_JOIN})|"
    rf"(?:{_TLDS})\b|(?:{_PROVIDERS})\b|{_WORD}(?:\.|\s+dot\s+)(?:{_TLDS})\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Tail:
    """A suspicious end (or start) of an utterance: what to over-redact (may be empty) and as what."""

    start: int
    end: int
    label: str


def _digits_in(run: str) -> int:
    return len(re.findall(r"\d", run)) + len(re.findall(rf"\b(?:{_DIGIT_WORDS})\b", run, re.IGNORECASE))


def _number_label(text: str, digits: int) -> str:
    return "CARD" if _CARD_CUE.search(text) or digits >= 13 else "PHONE"


def _tail_in(pattern: re.Pattern[str], body: str) -> re.Match[str] | None:
    return pattern.search(body, max(0, len(body) - TAIL_WINDOW))


def _lead_name(body: str) -> re.Match[str] | None:
    """An email lead-in and the words after it; after "write a" (the ASR's "write to") only names."""
    m = _tail_in(_EMAIL_LEAD_TAIL, body)
    if m is None or m.group("weak") is None:
        return m
    words = m.group("span").split()
    return m if words and all(w[:1].isupper() for w in words) else None


def open_tail(text: str) -> Tail | None:
    """The part of `text`'s end that may be the first half of an entity, or None if its end is closed."""
    body = TRAIL.sub("", text)
    if not body:
        return None
    # The `$`-anchored searches run on the last TAIL_WINDOW characters: linear time on any text.
    m = _tail_in(_NUM_TAIL, body)
    if m is not None:
        n = _digits_in(m.group())
        year = re.fullmatch(r"(?:19|20)\d\d", m.group()) is not None  # "back in 2019."
        cue = _NUMBER_CUE.search(body) is not None
        # "3, 1": digits read one at a time (or glued to a word) are a phone's start more often than not.
        spelled = len(re.findall(_NUM, m.group(), re.IGNORECASE)) >= 2 and n >= 2
        glued = m.start() > 0 and body[m.start() - 1].isalpha()
        if (n >= 3 and not year) or (n >= 1 and cue) or spelled or glued:
            if cue or n >= 7:
                return Tail(m.start(), m.end(), _number_label(body, n))
            # "room 214", "LDL was 142": held, but not over-redacted at the bound. Fewer than 7 digits
            # give no phone back, and a continuation's digits are over-redacted (`open_before`).
            return Tail(m.end(), m.end(), "PHONE")
    question = text.rstrip().endswith("?")  # "what's your number?": the answer is the other speaker's
    m = None if question else _tail_in(_NUMBER_LEAD_TAIL, body)
    if m is not None:
        return Tail(len(body), len(body), "PHONE")  # the whole entity is still to come
    m = None if question else _lead_name(body)
    if m is not None:
        span = m.group("span")
        if _STOP.search(span) or PLACEHOLDER.search(body[m.start("span") :]):
            return None
        return Tail(m.start("span") + len(span) - len(span.lstrip()), m.end(), "EMAIL")
    m = _tail_in(_EMAIL_TAIL, body)
    if m is not None:
        span = m.group()
        has_at = re.search(r"(?:\s|^)at\b|@", span, re.IGNORECASE) is not None
        dotted = re.search(_JOIN, span, re.IGNORECASE) is not None
        trailing = re.search(rf"(?:\s|^){_CONNECTOR}$|[@._]$", span, re.IGNORECASE) is not None
        if _STOP.search(span) and not dotted:
            return None
        if dotted or (has_at and (_EMAIL_CUE.search(body) or re.search(_PROVIDERS, span, re.IGNORECASE))):
            return Tail(m.start(), m.end(), "EMAIL")
        if trailing:  # "reception at", "jane dot": the rest is still to come
            return Tail(m.start(), m.end(), "EMAIL")
    return None


def ends_open(text: str) -> bool:
    """Whether `text` may end inside (or just before) an entity, so its final is worth holding."""
    return open_tail(text) is not None


def continuation_head(text: str) -> Tail | None:
    """The part of `text`'s start that reads as the rest of an entity begun before it, or None."""
    lead = LEAD.match(text)
    off = lead.end() if lead else 0
    body = TRAIL.sub("", text[off:])
    m = _NUM_HEAD.match(body)
    if m is not None:
        return Tail(off, off + m.end(), _number_label(body, _digits_in(m.group())))
    m = _DOMAIN_HEAD.match(body)
    if m is not None:
        return Tail(off, off + m.end(), "EMAIL")
    if _CONTINUES.match(body):
        m = _EMAIL_HEAD.match(body)
        end = m.end() if m is not None else 0
        return Tail(off, off + end, "EMAIL")
    return None


def head_unsafe(text: str, stored: tuple[str, bool] | None) -> bool:
    """Whether the head of `text` is over-redacted if still readable: the final it continues ended open
    (and was over-redacted), or the head is a domain after "at"."""
    if stored is not None and stored[1]:
        return True
    lead = LEAD.match(text)
    return _DOMAIN_HEAD.match(text[lead.end() if lead else 0 :]) is not None


def starts_continuation(text: str) -> bool:
    return continuation_head(text) is not None


def _over(result: Result, span: Callable[[str], Tail | None]) -> Result:
    """Replace the suspicious part `span` finds in the redacted text by its placeholder (fail safe)."""
    text, counts = result
    t = span(text)
    if t is None or t.end <= t.start or not re.search(r"\w", text[t.start : t.end]):
        return result
    out = dict(counts)
    out[t.label] = out.get(t.label, 0) + 1
    return text[: t.start] + f"[{t.label}]" + text[t.end :], out


def over_redact_tail(result: Result) -> Result:
    return _over(result, open_tail)


def over_redact_head(result: Result) -> Result:
    return _over(result, continuation_head)


# "that harmfamily.com": a dotted domain at the start of an utterance, after "at", the ASR's "that", or
# nothing. Read as an address's second half only after a final that ends in a name after a lead-in.
_LOOSE_DOMAIN_HEAD = re.compile(
    rf"^(?:(?:at|that)\b\s*|@\s*)?(?:{_WORD}\s+){{0,2}}{_WORD}(?:\.|\s+dot\s+)(?:{_TLDS})\b", re.IGNORECASE
)
_LOOSE_NUM = r"(?:[a-z]*\d+(?:[./]\d+)*|(?:" + _DIGIT_WORDS + r")\b)"  # "aton3": digits glued to a word
_LOOSE_NUM_TAIL = re.compile(rf"(?<![\w\]]){_LOOSE_NUM}(?:[\s,\-]+{_LOOSE_NUM})*$", re.IGNORECASE)
_NUMBER_END = re.compile(r"\[(?:CARD|PHONE)\]\W*$")
_DIGIT_RUN = re.compile(rf"(?<![\w\]])(?:\+\s*)?{_NUM_RUN}(?![\w\[])", re.IGNORECASE)


def name_tail(text: str) -> Tail | None:
    """The words after an email lead-in at the end of `text` ("write a Henrik Whitfield"), if any."""
    t = open_tail(text)
    if t is None or t.label != "EMAIL" or t.end <= t.start:
        return None
    return t if _lead_name(TRAIL.sub("", text)) is not None else None


def domain_head(text: str) -> Tail | None:
    """A dotted domain at the start of `text`, with or without "at"/"that" before it."""
    lead = LEAD.match(text)
    off = lead.end() if lead else 0
    m = _LOOSE_DOMAIN_HEAD.match(text, off)
    return None if m is None else Tail(off, m.end(), "EMAIL")


def tail_digits(text: str) -> Tail | None:
    """The number run at the end of a (redacted) text, digits glued to a word included."""
    body = TRAIL.sub("", text)
    m = _tail_in(_LOOSE_NUM_TAIL, body)
    return None if m is None else Tail(m.start(), m.end(), _number_label(body, _digits_in(m.group())))


def head_digits(text: str) -> Tail | None:
    """The number run at the start of a (redacted) text."""
    lead = LEAD.match(text)
    off = lead.end() if lead else 0
    m = _NUM_HEAD.match(text, off)
    return None if m is None else Tail(off, m.end(), "PHONE")


def digits(text: str, t: Tail | None) -> int:
    return 0 if t is None else _digits_in(text[t.start : t.end])


def ends_in_number(text: str) -> str | None:
    """The placeholder ("CARD" or "PHONE") a redacted text ends in, or None."""
    m = _NUMBER_END.search(text)
    return None if m is None else m.group()[1:].split("]")[0]


def replace(result: Result, t: Tail | None) -> Result:
    """`result` with the span `t` replaced by its placeholder (fail safe), if it holds a word."""
    text, counts = result
    if t is None or t.end <= t.start or not re.search(r"\w", text[t.start : t.end]):
        return result
    out = dict(counts)
    out[t.label] = out.get(t.label, 0) + 1
    return text[: t.start] + f"[{t.label}]" + text[t.end :], out


def over_redact_runs(result: Result, label: str, least: int = 3) -> Result:
    """Every number run of `least` digits or more in `result` replaced by `label` (fail safe): after a
    [CARD] or [PHONE], a short run is that entity's rest more often than not ("[CARD]", "I in 4 4 4 4 4")."""
    text, counts = result
    out = dict(counts)
    pieces: list[str] = []
    pos = 0
    for m in _DIGIT_RUN.finditer(text):
        if _digits_in(m.group()) >= least:
            pieces += [text[pos : m.start()], f"[{label}]"]
            pos = m.end()
            out[label] = out.get(label, 0) + 1
    if not pieces:
        return result
    return "".join(pieces) + text[pos:], out

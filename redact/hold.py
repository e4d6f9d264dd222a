"""Entities split across utterances: which finals to hold back, and how to redact finals jointly.

A speaker who pauses inside an email address or a phone number ("please write to reception" (pause) "at
example dot org") makes the VAD end the utterance there, and each half redacted alone leaves the entity
readable once the stored utterances are read in order. So a final whose tail may be the start of an entity
(`ends_open`: digits, a lead-in such as "email is", name-dot-name, a trailing "at") is held back until the
track's next final arrives or a short bound passes; the finals of a chain are then redacted as one text and
the result split back into per-utterance texts, every placeholder whole in one of them (`redact_joint`).
At the bound the held tail is over-redacted on its own (fail safe). A final that starts like a continuation
("at example dot org", digits) after one already stored is redacted joined to it, and only its own share
kept. Everything else commits at once.

`TrackHold` is the sans-IO state machine (one per track: entity halves come from one speaker); it takes
`now` and returns `Batch`es to redact (`redact_batch`) and store, in order.
"""

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RedactOne = Callable[[str], tuple[str, dict[str, int]]]  # text -> (redacted text, placeholder counts)
Result = tuple[str, dict[str, int]]

HOLD_S = 2.0  # how long a final may wait for the next one on its track
MAX_PIECES = 3  # finals redacted as one text at most (bounds the wait to MAX_PIECES * HOLD_S)
CONTINUE_S = 10.0  # how long a stored final stays the left side of a continuation
TAIL_WINDOW = 200  # characters of an utterance's end searched for an open entity (the longest is ~100)

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")
_TRAIL = re.compile(r"[\s.,;:!?\u2026]+$")
_LEAD = re.compile(r"^[\s.,;:!?\u2026\"']+")

_DIGIT_WORDS = (
    "zero|oh|o|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "double|triple"
)
_NUM = rf"(?:\d+(?:[./]\d+)*|(?:{_DIGIT_WORDS})\b)"  # "-" only between tokens: no ambiguous backtracking
_NUM_RUN = rf"{_NUM}(?:[\s,\-]+{_NUM})*"
_NUM_TAIL = re.compile(rf"(?<![\w\]])(?:\+\s*)?{_NUM_RUN}$", re.IGNORECASE)
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
    r"\b(?:e-?\s?mail(?:\s+address)?(?:\s+is|'s)?|address\s+is|write\s+(?:to|me\s+at)|"
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


def open_tail(text: str) -> Tail | None:
    """The part of `text`'s end that may be the first half of an entity, or None if its end is closed."""
    body = _TRAIL.sub("", text)
    if not body:
        return None
    # The `$`-anchored searches run on the last TAIL_WINDOW characters: linear time on any text.
    m = _tail_in(_NUM_TAIL, body)
    if m is not None:
        n = _digits_in(m.group())
        year = re.fullmatch(r"(?:19|20)\d\d", m.group()) is not None  # "back in 2019."
        cue = _NUMBER_CUE.search(body) is not None
        if (n >= 3 and not year) or (n >= 1 and cue):
            if cue or n >= 7:
                return Tail(m.start(), m.end(), _number_label(body, n))
            # "room 214", "LDL was 142": held, but not over-redacted at the bound. Fewer than 7 digits
            # give no phone back, and a continuation's digits are over-redacted (`open_before`).
            return Tail(m.end(), m.end(), "PHONE")
    question = text.rstrip().endswith("?")  # "what's your number?": the answer is the other speaker's
    m = None if question else _tail_in(_NUMBER_LEAD_TAIL, body)
    if m is not None:
        return Tail(len(body), len(body), "PHONE")  # the whole entity is still to come
    m = None if question else _tail_in(_EMAIL_LEAD_TAIL, body)
    if m is not None:
        span = m.group("span")
        if _STOP.search(span) or _PLACEHOLDER.search(body[m.start("span") :]):
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
    lead = _LEAD.match(text)
    off = lead.end() if lead else 0
    body = _TRAIL.sub("", text[off:])
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


def _head_unsafe(text: str, stored: tuple[str, bool] | None) -> bool:
    """Whether the head of `text` is over-redacted if still readable: the final it continues ended open
    (and was over-redacted), or the head is a domain after "at"."""
    if stored is not None and stored[1]:
        return True
    lead = _LEAD.match(text)
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


def _decompose(joined: str, redacted: str) -> list[tuple[int, int, str | None]] | None:
    """`redacted` as spans of `joined`: (start, end, None) copied, (start, end, label) replaced by it.

    Each copied part is found at its first place after the previous one (linear time; a regex of lazy
    groups can take exponential time on digit runs). Where that misplaces a cut inside an entity, the
    parts still add up to `redacted`: only which text gets a placeholder can move, never a digit."""
    literals = _PLACEHOLDER.split(redacted)
    labels = _PLACEHOLDER.findall(redacted)
    first, last = literals[0], literals[-1]
    if not joined.startswith(first) or len(first) + len(last) > len(joined) or not joined.endswith(last):
        return None
    out: list[tuple[int, int, str | None]] = [(0, len(first), None)]
    pos, tail_at = len(first), len(joined) - len(last)
    for label, lit in zip(labels[:-1], literals[1:-1], strict=True):
        at = joined.find(lit, pos + 1, tail_at)  # every replaced span holds at least one character
        if at < 0:
            return None
        out += [(pos, at, label), (at, at + len(lit), None)]
        pos = at + len(lit)
    if labels:
        if tail_at <= pos:
            return None
        out.append((pos, tail_at, labels[-1]))
        out.append((tail_at, len(joined), None))
    elif pos != len(joined):
        return None
    return out


def redact_joint(texts: Sequence[str], redact: RedactOne, *, first_stored: bool = False) -> list[Result]:
    """Redact consecutive utterances as one text and split the result back, one result per text.

    Sentence punctuation the ASR put at each cut is left out of the joined text (it hides "reception. at
    example.org" from the rules) and put back after. A placeholder over a cut goes whole to the text that
    held most of the entity (with `first_stored`, never to the first text, which is already stored); a
    text the entity used up entirely shows the placeholder too (counted once). If the result cannot be
    split back, each text is redacted alone and over-redacted at its cuts (fail safe)."""
    n = len(texts)
    chars: list[str] = []
    origin: list[tuple[int, int] | None] = []  # (text index, offset in it) of each joined character
    suffixes: list[str] = []
    for i, t in enumerate(texts):
        body = t.strip()
        suffix = ""
        if i < n - 1:
            m = _TRAIL.search(body)
            if m is not None:
                suffix, body = body[m.start() :].strip(), body[: m.start()]
        suffixes.append(suffix)
        if i > 0:
            chars.append(" ")
            origin.append(None)
        base = len(t) - len(t.lstrip())
        for j, c in enumerate(body):
            chars.append(c)
            origin.append((i, base + j))
    joined = "".join(chars)
    redacted, _ = redact(joined)
    parts = _decompose(joined, redacted)
    if parts is None:
        return _fallback(texts, redact)
    pieces: list[list[str]] = [[] for _ in texts]
    counts: list[dict[str, int]] = [{} for _ in texts]
    used_by: list[str | None] = [None] * n
    for start, end, label in parts:
        if label is None:
            for k in range(start, end):
                o = origin[k]
                if o is not None:  # the space put between two texts is copied into neither
                    pieces[o[0]].append(texts[o[0]][o[1]])
            continue
        share = Counter(o[0] for o in origin[start:end] if o is not None)
        candidates = [i for i in share if not (first_stored and i == 0)] or list(share)
        owner = max(sorted(candidates), key=lambda i: share[i])
        pieces[owner].append(label)
        name = label[1:-1]
        counts[owner][name] = counts[owner].get(name, 0) + 1
        for i in share:
            if i != owner:
                used_by[i] = label
    out: list[Result] = []
    for i in range(n):
        text = "".join(pieces[i]).strip()
        label = used_by[i]
        if label is not None and not re.search(r"\w", text):
            text = label + text  # all of this utterance was inside the entity
        out.append((text + suffixes[i] if text else suffixes[i], counts[i]))
    return out


def _joined(texts: Sequence[str]) -> str:
    """The texts as one, without the sentence punctuation the ASR put at each cut."""
    return " ".join([_TRAIL.sub("", t.strip()) for t in texts[:-1]] + [texts[-1].strip()]).strip()


def _fallback(texts: Sequence[str], redact: RedactOne) -> list[Result]:
    out: list[Result] = []
    for i, t in enumerate(texts):
        r = redact(t)
        if i > 0:
            r = over_redact_head(r)
        if i < len(texts) - 1:
            r = over_redact_tail(r)
        out.append(r)
    return out


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


class Piece:
    """One final: the engine's handle for it, its raw text (memory only) and its redactor (variables and
    context bound). A plain class: mypyc's dataclasses cannot hold an `object` field."""

    __slots__ = ("key", "raw", "redact")

    def __init__(self, key: object, raw: str, redact: RedactOne) -> None:
        self.key = key
        self.raw = raw
        self.redact = redact


@dataclass(frozen=True, slots=True)
class Batch:
    """Finals to redact together and store in order. `stored`: the raw text of the track's previous final,
    already stored, that the first one continues; `open_before`: that one ended open (its tail was
    over-redacted), so the head of the first is over-redacted too; `open_after`: the last one still ends
    open and nothing follows in time, so its tail is over-redacted."""

    pieces: tuple[Piece, ...]
    stored: str | None = None
    open_before: bool = False
    open_after: bool = False
    held: bool = False


def redact_batch(batch: Batch) -> list[Result]:
    """One result per piece of `batch`, in order. Raises whatever the redactor raises (fail closed)."""
    texts = [p.raw for p in batch.pieces]
    if batch.stored is not None:
        texts.insert(0, batch.stored)
    first = batch.pieces[0]
    redact = first.redact
    if batch.open_after:  # the open tail of the whole text, which may reach back over a cut

        def redact(text: str) -> Result:
            return over_redact_tail(first.redact(text))

    if len(texts) == 1:
        results = [redact(texts[0])]
    else:
        joint = redact_joint(texts, redact, first_stored=batch.stored is not None)
        if batch.stored is not None:
            joint = joint[1:]
        # Each share once more alone, with its own context: joining can only add placeholders.
        results = []
        for p, (text, counts) in zip(batch.pieces, joint, strict=True):
            again, more = p.redact(text)
            results.append((again, _merge(counts, more)))
    if batch.open_before:
        results[0] = over_redact_head(results[0])
    if batch.open_after:
        results[-1] = over_redact_tail(results[-1])
    return results


class TrackHold:
    """Holds the finals of one track whose end may continue in the next (see the module docstring)."""

    __slots__ = ("_chain", "_deadline", "_hold_s", "_last", "_max", "_stored")

    def __init__(self, hold_s: float = HOLD_S, max_pieces: int = MAX_PIECES) -> None:
        self._hold_s = hold_s
        self._max = max(1, max_pieces)
        self._chain: list[Piece] = []
        self._deadline: float | None = None
        self._stored: tuple[str, bool] | None = None  # left side of the held chain, if it continues one
        self._last: tuple[str, bool, float] | None = None  # raw, ended open, when: the last final stored

    @property
    def deadline(self) -> float | None:
        """When the held chain must be released (`expire`), or None when nothing is held."""
        return self._deadline

    @property
    def held(self) -> int:
        return len(self._chain)

    def final(self, piece: Piece, now: float) -> list[Batch]:
        """A new final on the track: what to store now (possibly nothing while it is held)."""
        out = self.expire(now)
        if self._chain:
            self._chain.append(piece)
            is_open = self._open(self._chain, self._stored)
            if is_open and len(self._chain) < self._max:
                self._deadline = now + self._hold_s
                return out
            out.append(self._release(now, open_after=is_open))
            return out
        stored: tuple[str, bool] | None = None
        last = self._last
        if last is not None and now - last[2] <= CONTINUE_S and starts_continuation(piece.raw):
            stored = (last[0], last[1])
        if self._open([piece], stored):
            self._chain = [piece]
            self._stored = stored
            self._deadline = now + self._hold_s
            return out
        self._last = (piece.raw, False, now)
        out.append(
            Batch(
                (piece,),
                stored=stored[0] if stored else None,
                open_before=_head_unsafe(piece.raw, stored),
            )
        )
        return out

    def expire(self, now: float) -> list[Batch]:
        """The held chain, if its bound has passed: its open tail is over-redacted."""
        if self._deadline is None or now < self._deadline:
            return []
        return [self._release(now, open_after=True)]

    def flush(self, now: float) -> list[Batch]:
        """End of the track: whatever is held is released, its open tail over-redacted."""
        if not self._chain:
            return []
        return [self._release(now, open_after=True)]

    def _open(self, pieces: Sequence[Piece], stored: tuple[str, bool] | None) -> bool:
        """Whether the finals, redacted as one text, still end open: "555 123 4567" is closed once it
        is "[PHONE]"."""
        if self._hold_s <= 0:
            return False
        joined = _joined(([stored[0]] if stored else []) + [p.raw for p in pieces])
        if not ends_open(joined):
            return False
        try:
            text, _ = pieces[0].redact(joined)
        except Exception:  # the batch's own redaction fails closed; holding would not help
            return False
        return ends_open(text)

    def _release(self, now: float, *, open_after: bool) -> Batch:
        chain, stored = tuple(self._chain), self._stored
        self._chain, self._stored, self._deadline = [], None, None
        self._last = (_joined([p.raw for p in chain]), open_after, now)
        return Batch(
            chain,
            stored=stored[0] if stored else None,
            open_before=_head_unsafe(chain[0].raw, stored),
            open_after=open_after,
            held=True,
        )

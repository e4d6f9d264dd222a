"""The redaction pipeline: runtime variables first, then emails, then digit entities; one placeholder per
span, every other character kept byte for byte.

Two guarantees hold whatever the recognisers miss (fail closed):

* No 10-digit run and no Luhn-valid 13-19-digit run (any Unicode decimal digits) survives, wherever it
  sits ("5551234567a", "12.5551234567", "$5551234567", "ext. 4111111111111111"): a last check over what
  the spans leave redacts it, as [CARD] if Luhn-valid, else as [PHONE]. The one exception is the dev
  rules' labelled identifier: a 10-digit run, not Luhn-valid, whose nearest cue is another ID ("MRN
  5551234567", "NPI 1669428715") stays.
* Redaction is idempotent: a placeholder changes what is around it ("456789 five1111111111111" ->
  "456789 five[CARD]", where "five" is now a word), so the output is redacted again until nothing more
  is found (a few passes at most; a second pass over a line whose rest holds too few digits for any
  entity costs a couple of string scans).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from redact.card import luhn_valid
from redact.context import Cue, cue_index, nearest_cue
from redact.email import (
    CONTEXT_HINTS,
    PROVIDER_HINT_RE,
    TLDS,
    WEBMAIL_HINT_RE,
    find_email_fallback,
    find_emails,
    merge_adjacent,
)
from redact.errors import RedactionError
from redact.numbers import Hit, ascii_digits, hint, scan
from redact.numeric import find_numeric
from redact.spans import Span
from redact.variables import compile_variables

PHONE, EMAIL, CARD, SSN = "PHONE", "EMAIL", "CARD", "SSN"
DEFAULT_ENTITIES: frozenset[str] = frozenset({PHONE, EMAIL, CARD, SSN})
_NUMERIC = frozenset({PHONE, CARD, SSN})

# Lines with too few digits and number words cannot hold a digit entity: skip them without tokenising.
# No entity has fewer than 7 digits (`redact.numeric.find_numeric`); `numbers.hint` bounds what the
# digit runs and number words of one scan can give, and the recognisers reuse that scan.
_MIN_DIGITS = 7


# A spoken address ends in ".com"/"dot com" (a known TLD); a written one has an "@".
# Two patterns led by a literal (".", "dot"), which the engine's search skips to; one pattern led by
# the class "[.d]" entered the matcher at every "d".
_TLD_DOT_RE: Final = re.compile(rf"\.(?:{TLDS})\b")
_TLD_WORD_RE: Final = re.compile(rf"dot(?<![a-z]dot)\s+(?:{TLDS})\b")


def _tld_hint(lowered: str) -> bool:
    return _TLD_DOT_RE.search(lowered) is not None or _TLD_WORD_RE.search(lowered) is not None


_WEBMAIL_WORDS = ("mail", "yahoo", "outlook", "aol", "cloud", "comcast")  # what WEBMAIL_HINT_RE looks for


def _has_email_hint(lowered: str) -> bool:
    if "@" in lowered:
        return True
    at = " at " in lowered or lowered.startswith("at ")
    if not at and not any(w in lowered for w in _WEBMAIL_WORDS):
        return False
    tld = _tld_hint(lowered)
    if at:
        if tld or PROVIDER_HINT_RE.search(lowered) is not None:
            return True
    # "weren't yahoo.com": a webmail domain without its "at"
    return tld and WEBMAIL_HINT_RE.search(lowered) is not None


_DOT_WORD_RE = re.compile(r"\.\w")


def _has_email_context(lowered: str) -> bool:
    """An address the ASR wrote without its "at" needs a dot and words that announce it."""
    if _DOT_WORD_RE.search(lowered) is None:  # no dotted name ("jan.do"), nothing for the fallback
        return False
    if "[email]" in lowered:  # a placeholder (a second pass) is no cue
        lowered = lowered.replace("[email]", "")
    return any(h in lowered for h in CONTEXT_HINTS)


_MASK = "\x00"


@dataclass(frozen=True, slots=True)
class Redaction:
    """Redacted text and how many placeholders of each name it holds (for metrics and analytics)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def _mask(text: str, spans: Iterable[Span]) -> str:
    out = text
    for s in spans:
        out = out[: s.start] + _MASK * (s.end - s.start) + out[s.end :]
    return out


def _kept(spans: list[Span]) -> list[Span]:
    """The spans that are rendered: in order, each one that overlaps an earlier one dropped."""
    if len(spans) < 2:
        return spans
    kept: list[Span] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start >= pos:  # else it overlaps an earlier, higher-priority span
            kept.append(s)
            pos = s.end
    return kept


def _render(text: str, spans: list[Span]) -> tuple[str, dict[str, int]]:
    """The text with `spans` (in order, not overlapping: `_kept`) replaced, and the placeholder counts."""
    if not spans:
        return text, {}
    parts: list[str] = []
    counts: dict[str, int] = {}
    pos = 0
    for s in spans:
        parts.append(text[pos : s.start])
        parts.append(f"[{s.label}]")
        counts[s.label] = counts.get(s.label, 0) + 1
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts), counts


# The last check (see the module docstring): a run of exactly 10 digits, or of 13-19 (Luhn-checked).
_LONG_RUN_RE = re.compile(r"\d\d{9,}")  # led by a class: the engine skips to a digit
_RUN_RE = re.compile(r"\d+")


def _long_run_label(run: str, text: str, start: int, entities: frozenset[str], floor: int) -> str | None:
    digits = ascii_digits(run)
    n = len(digits)
    if 13 <= n <= 19 and luhn_valid(digits):
        return CARD if CARD in entities else None  # a card in any context, labelled or not (rule 6)
    if n != 10:
        return None
    cue = nearest_cue(text, start, floor, cue_index(text))
    if cue is Cue.OTHER_ID:
        return None  # "MRN 5551234567": an identifier the speaker labelled stays (rule 5)
    label = CARD if cue is Cue.CARD else PHONE
    return label if label in entities else None


def _surviving_runs(text: str, spans: list[Span], entities: frozenset[str]) -> list[Span]:
    """Spans for 10-digit and Luhn-valid 13-19-digit runs that `spans` (in order, not overlapping) leave
    in the text; a run a span cuts counts by the part left outside it, as the output holds it."""
    extra: list[Span] = []
    if _LONG_RUN_RE.search(text) is None:
        return _joined_runs(text, spans, extra, entities) if _JOINED_GATE_RE.search(text) else []
    pos = 0
    for end, nxt in [*((s.start, s.end) for s in spans), (len(text), len(text))]:
        for m in _RUN_RE.finditer(text, pos, end):
            if m.end() - m.start() >= 10:
                label = _long_run_label(m.group(), text, m.start(), entities, pos)
                if label is not None:
                    extra.append(Span(m.start(), m.end(), label))
        pos = nxt
    if _JOINED_GATE_RE.search(text) is not None:
        extra.extend(_joined_runs(text, spans, extra, entities))
    return extra


# Ten or more digits joined by thousands separators or points ("$5,551,234,567", "555,123,4567",
# "5.551.234.567"): how Whisper writes a phone it heard as an amount. No price, dose or date in a patient
# call has ten digits, so such a number is redacted as the plain run would be (recall first).
_JOINED_GATE_RE = re.compile(r"\d[,.]\d")
_JOINED_RE = re.compile(r"\d+(?:[,.]\d+)+")
_SEPARATORS_RE = re.compile(r"[,.]")


def _joined_runs(text: str, spans: list[Span], extra: list[Span], entities: frozenset[str]) -> list[Span]:
    found: list[Span] = []
    pos = 0
    for end, nxt in [*((s.start, s.end) for s in spans), (len(text), len(text))]:
        for m in _JOINED_RE.finditer(text, pos, end):
            digits = ascii_digits(_SEPARATORS_RE.sub("", m.group()))
            n = len(digits)
            if n < 10 or any(e.start < m.end() and m.start() < e.end for e in extra):
                continue
            if 13 <= n <= 19 and luhn_valid(digits):
                label: str | None = CARD
            else:
                cue = nearest_cue(text, m.start(), pos, cue_index(text))
                label = None if cue is Cue.OTHER_ID else CARD if cue is Cue.CARD else PHONE
            if label is not None and label in entities:
                found.append(Span(m.start(), m.end(), label))
        pos = nxt
    return found


def find_spans(
    text: str,
    variables: Mapping[str, str] | None = None,
    entities: frozenset[str] = DEFAULT_ENTITIES,
) -> list[Span]:
    """The spans of every recogniser (they may overlap; `_kept` says which are rendered)."""
    return _find(text, variables, entities)[0]


def _find(
    text: str, variables: Mapping[str, str] | None, entities: frozenset[str]
) -> tuple[list[Span], bool, list[Hit] | None, bool]:
    """Spans; whether the digit recognisers ran (else the text holds fewer than 7 digits); the number
    scan of the text as they saw it (None: not scanned, or rare Unicode whose lower case changes length);
    whether the text itself (no variables) has neither an e-mail hint nor an e-mail context (`_settled`)."""
    spans: list[Span] = []
    work = text
    lowered: str | None = None
    quiet = False
    if variables:
        found = compile_variables(variables).find(work)
        spans.extend(found)
        work = _mask(work, found)
    if EMAIL in entities:
        lowered = work.lower()
        hinted = _has_email_hint(lowered)
        found = find_emails(work) if hinted else []
        context = _has_email_context(lowered)
        if context and (extra := find_email_fallback(work, found)):
            found = merge_adjacent(work, found + extra)
        quiet = not variables and not hinted and not context
        if found:
            spans.extend(found)
            work = _mask(work, found)
            lowered = None
    if entities & _NUMERIC:
        if lowered is None:
            lowered = work.lower()
        if len(lowered) != len(work):  # rare Unicode: do not guess, run the recognisers
            spans.extend(s for s in find_numeric(work) if s.label in entities)
            return spans, True, None, quiet
        matches = scan(lowered)
        if hint(matches) >= _MIN_DIGITS:
            spans.extend(s for s in find_numeric(work, matches) if s.label in entities)
            return spans, True, matches, quiet
        return spans, False, matches, quiet
    return spans, False, None, quiet


_MAX_PASSES = 4


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


# Placeholders that hold no letters of an e-mail hint or cue ("[email]" holds "mail"; a variable's
# name may hold anything).
_QUIET_LABELS = frozenset({PHONE, CARD, SSN})


def _settled(
    text: str, spans: list[Span], matches: list[Hit] | None, out: str, numeric: bool, quiet: bool
) -> bool:
    """True when another pass over `out` (`text` with `spans` rendered) provably finds nothing, so it
    can be skipped. Outside the placeholders `out` is `text` unchanged; unless a span cuts a word
    ("five1111..." -> "five[CARD]", where "five" becomes a word), the digit runs and number words the
    second pass would count are those of `matches` outside the spans (a run a span cuts counted whole),
    and its e-mail checks are cheap enough to run here on `out` itself. `numeric`: digit entities asked
    for. `quiet`: `text` has no e-mail hint or context (`_find`); then neither has `out` if every
    placeholder is one of _QUIET_LABELS: each hint word ("@", " at ", "mail", "send", ".x") has no
    bracket, so in `out` it lies between two placeholders, in text that `text` holds too."""
    if matches is None and numeric:
        return False  # rare Unicode whose lower case changes length: no bound, run the pass
    size = len(text)
    for sp in spans:
        if sp.start > 0 and _is_word_char(text[sp.start - 1]) and _is_word_char(text[sp.start]):
            return False
        if sp.end < size and _is_word_char(text[sp.end]) and _is_word_char(text[sp.end - 1]):
            return False
    if matches is not None:
        outside = [m for m in matches if not any(sp.start <= m.start and m.end <= sp.end for sp in spans)]
        # A variable's placeholder may hold a number word ("[TWO]"); the built-in ones hold none.
        named = sum(hint(scan(f"[{sp.label.lower()}]")) for sp in spans if sp.label not in DEFAULT_ENTITIES)
        if hint(outside) + named >= _MIN_DIGITS:
            return False
    if quiet and all(sp.label in _QUIET_LABELS for sp in spans):
        return True
    lowered = out.lower()
    return not _has_email_hint(lowered) and not _has_email_context(lowered)


def _redact_once(
    text: str, variables: Mapping[str, str] | None, entities: frozenset[str]
) -> tuple[str, dict[str, int], bool]:
    """One pass: the text, its counts, and whether a further pass would find nothing (`_settled`)."""
    found, numeric, matches, quiet = _find(text, variables, entities)
    spans = _kept(found)
    if numeric and (extra := _surviving_runs(text, spans, entities)):
        spans = sorted([*spans, *extra], key=lambda s: s.start)
    out, counts = _render(text, spans)
    return out, counts, not spans or _settled(text, spans, matches, out, bool(entities & _NUMERIC), quiet)


def _redact(
    text: str, variables: Mapping[str, str] | None, entities: frozenset[str]
) -> tuple[str, dict[str, int]]:
    """`redact_detailed` as a tuple (a frozen dataclass's constructor runs interpreted under mypyc)."""
    try:
        out, counts, settled = _redact_once(text, variables, entities)
        passes = 1
        while not settled and passes < _MAX_PASSES:  # idempotent: redact the output until nothing changes
            # Variables are matched once: a value that is also a placeholder's name ("NAME") would nest.
            again, more, settled = _redact_once(out, None, entities)
            if not more:
                break
            counts = dict(counts)
            for label, n in more.items():
                counts[label] = counts.get(label, 0) + n
            out = again
            passes += 1
        return out, counts
    except RedactionError:
        raise
    except Exception as exc:  # fail closed: callers drop the text; the message never includes it
        raise RedactionError(f"redaction failed: {type(exc).__name__} (text length {len(text)})") from None


def redact_detailed(
    text: str,
    variables: Mapping[str, str] | None = None,
    *,
    entities: frozenset[str] = DEFAULT_ENTITIES,
) -> Redaction:
    out, counts = _redact(text, variables, entities)
    return Redaction(out, counts)


def redact_text(text: str, variables: Mapping[str, str] | None = None) -> str:
    return _redact(text, variables, DEFAULT_ENTITIES)[0]


class Redactor:
    """A configured redactor: `Redactor(entities={"PHONE", "EMAIL"})(text, variables)`."""

    __slots__ = ("entities",)

    def __init__(self, entities: Iterable[str] = DEFAULT_ENTITIES) -> None:
        self.entities = frozenset(e.upper() for e in entities)

    def __call__(self, text: str, variables: Mapping[str, str] | None = None) -> str:
        return _redact(text, variables, self.entities)[0]

    def detailed(self, text: str, variables: Mapping[str, str] | None = None) -> Redaction:
        return redact_detailed(text, variables, entities=self.entities)

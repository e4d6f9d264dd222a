"""The redaction pipeline: runtime variables first, then emails, then digit entities; one placeholder per
span, every other character kept byte for byte."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from redact.email import CONTEXT_HINTS, TLDS, find_email_fallback, find_emails, merge_adjacent
from redact.errors import RedactionError
from redact.numbers import NUMBER_WORDS
from redact.numeric import find_numeric
from redact.spans import Span
from redact.variables import compile_variables

PHONE, EMAIL, CARD, SSN = "PHONE", "EMAIL", "CARD", "SSN"
DEFAULT_ENTITIES: frozenset[str] = frozenset({PHONE, EMAIL, CARD, SSN})
_NUMERIC = frozenset({PHONE, CARD, SSN})

# Lines with none of these cannot hold an entity: skip them without running any recogniser.
_DIGIT_RE = re.compile(r"\d")
_WORD_RE = re.compile(r"[a-z]+")


def _has_numeric_hint(text: str) -> bool:
    # A set look-up per word is several times faster than one regex alternation of the number words.
    return _DIGIT_RE.search(text) is not None or not NUMBER_WORDS.isdisjoint(_WORD_RE.findall(text.lower()))


# A spoken address ends in ".com"/"dot com" (a known TLD); a written one has an "@".
_TLD_HINT_RE = re.compile(rf"(?:\.|\bdot\s+)(?:{TLDS})\b")


def _has_email_hint(lowered: str) -> bool:
    if "@" in lowered:
        return True
    return (" at " in lowered or lowered.startswith("at ")) and _TLD_HINT_RE.search(lowered) is not None


def _has_email_context(lowered: str) -> bool:
    """An address the ASR wrote without its "at" needs a dot and words that announce it."""
    return "." in lowered and any(h in lowered for h in CONTEXT_HINTS)


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


def _render(text: str, spans: list[Span]) -> Redaction:
    if not spans:
        return Redaction(text, {})
    parts: list[str] = []
    counts: dict[str, int] = {}
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue  # overlaps an earlier, higher-priority span
        parts.append(text[pos : s.start])
        parts.append(f"[{s.label}]")
        counts[s.label] = counts.get(s.label, 0) + 1
        pos = s.end
    parts.append(text[pos:])
    return Redaction("".join(parts), counts)


def find_spans(
    text: str,
    variables: Mapping[str, str] | None = None,
    entities: frozenset[str] = DEFAULT_ENTITIES,
) -> list[Span]:
    spans: list[Span] = []
    work = text
    if variables:
        found = compile_variables(variables).find(work)
        spans.extend(found)
        work = _mask(work, found)
    if EMAIL in entities:
        lowered = work.lower()
        found = find_emails(work) if _has_email_hint(lowered) else []
        if _has_email_context(lowered) and (extra := find_email_fallback(work, found)):
            found = merge_adjacent(work, found + extra)
        if found:
            spans.extend(found)
            work = _mask(work, found)
    if entities & _NUMERIC and _has_numeric_hint(work):
        spans.extend(s for s in find_numeric(work) if s.label in entities)
    return spans


def redact_detailed(
    text: str,
    variables: Mapping[str, str] | None = None,
    *,
    entities: frozenset[str] = DEFAULT_ENTITIES,
) -> Redaction:
    try:
        return _render(text, find_spans(text, variables, entities))
    except RedactionError:
        raise
    except Exception as exc:  # fail closed: callers drop the text; the message never includes it
        raise RedactionError(f"redaction failed: {type(exc).__name__} (text length {len(text)})") from None


def redact_text(text: str, variables: Mapping[str, str] | None = None) -> str:
    return redact_detailed(text, variables).text


class Redactor:
    """A configured redactor: `Redactor(entities={"PHONE", "EMAIL"})(text, variables)`."""

    __slots__ = ("entities",)

    def __init__(self, entities: Iterable[str] = DEFAULT_ENTITIES) -> None:
        self.entities = frozenset(e.upper() for e in entities)

    def __call__(self, text: str, variables: Mapping[str, str] | None = None) -> str:
        return redact_detailed(text, variables, entities=self.entities).text

    def detailed(self, text: str, variables: Mapping[str, str] | None = None) -> Redaction:
        return redact_detailed(text, variables, entities=self.entities)

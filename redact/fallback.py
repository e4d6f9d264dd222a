"""Fail closed: digit runs no shape rule took, redacted by length where the words around say what they are.

Whisper mangles digits it hears fast ("555-123-4-567", "555-0-1888", "4,10011,1011,111,..."), so a
run the phone/card/SSN shapes in `redact.numeric` reject is looked at again here, by its length and the
nearest cue before it (counted as a second pass over the redacted text would see it, so redaction stays
idempotent).
"""

from __future__ import annotations

import itertools
import re

from redact.context import WINDOW, Cue, LazyCues
from redact.numbers import Group, Link, gap_link
from redact.phone import EXTENSION_RE
from redact.spans import Span


def _label(digits: str, cue: Cue | None, phone_shaped: bool, soft: bool) -> str | None:
    """What a digit run the shape rules rejected is, when the words before it say phone, card or SSN.

    Whisper mangles digits it hears fast ("555-123-4-567", "4,10011,1011,111,..."), so in context a run
    is redacted by length alone: a card (any run of 13 digits or more, in card or no context, and 7 or
    more when the speaker says card), a phone (7-15 digits after a phone cue or "my number"), an SSN
    (7 or more after "social"). Numbers labelled as another identifier stay. Without any cue, 7-12 digits
    are a phone when written the way Whisper garbles one: hyphenated groups led by three digits
    ("555-0-1888") or thousands separators ("3,782,822", a quantity would carry a unit or a currency).
    """
    n = len(digits)
    if cue is Cue.OTHER_ID or n < 7:
        return None
    if cue is Cue.CARD:
        return "CARD"
    if cue is Cue.SSN:
        return "SSN"
    if cue is Cue.PHONE and n <= 15:
        return "PHONE"
    if n >= 13:
        return "CARD"
    if cue is None and (phone_shaped or soft):
        return "PHONE"
    return None


def counting(digits: str) -> bool:
    """ "one, two, three, four, five, six, seven": digits that count up or down by one."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return steps == {1} or steps == {9}


_LAST_DIGITS_RE = re.compile(r"(?:ending|ends|end)\s+(?:in|with)[\s:,]*$|last\s+(?:four|4)[\s\w]{0,12}$")
_YEAR_RE = re.compile(r"(?:19|20)\d\d")


def _stays(text: str, g: Group) -> bool:
    """Never part of a fail-closed run: blocked for good ("room 214", "Oh,"), a lone year ("in 2019,
    2020 and 2021"), or the last digits of a card ("ending in 4242 4242")."""
    if g.blocked and not g.soft:
        return True
    if len(g.tokens) == 1 and not g.tokens[0].spoken and _YEAR_RE.fullmatch(g.digits):
        return True
    return _LAST_DIGITS_RE.search(text, max(0, g.start - 30), g.start) is not None


def _linked(a: Group, b: Group) -> bool:
    """Whether `b` continues the run `a` is in: a comma or filler between, or a sentence end between
    groups of 2-4 digits (the ASR split a number it heard in pauses: "5.5. 4.3.2. 1.0.8")."""
    if a.link is Link.LOOSE:
        return True
    return a.link is Link.SENTENCE and 2 <= len(a.digits) <= 4 and 2 <= len(b.digits) <= 4


def _tail_of(text: str, start: int, spans: list[Span]) -> int | None:
    """Index of the phone or card span that ends just before `start`, a comma or filler between."""
    for i, sp in enumerate(spans):
        if sp.end <= start and sp.label in ("PHONE", "CARD") and gap_link(text[sp.end : start]) is Link.LOOSE:
            return i
    return None


def _phone_shaped(text: str, run: list[Group]) -> bool:
    """One written group of hyphen-joined digit runs, the first of three digits: "555-0-1888"."""
    if len(run) != 1 or len(run[0].tokens) < 2:
        return False
    toks = run[0].tokens
    return (
        len(toks[0].digits) == 3
        and not any(t.spoken for t in toks)
        and all("-" in text[a.end : b.start] for a, b in itertools.pairwise(toks))
    )


def _inside(g: Group, spans: list[Span]) -> bool:
    return any(s.start <= g.start and g.end <= s.end for s in spans)


def _uncovered(groups: list[Group], spans: list[Span]) -> list[Group]:
    """The groups, or the parts of groups (runs of their tokens), that no span covers."""
    out: list[Group] = []
    for g in groups:
        if g.blocked and not g.soft:
            out.append(g)
            continue
        if not any(s.start < g.end and g.start < s.end for s in spans):
            out.append(g)
            continue
        cur: Group | None = None
        for t in g.tokens:
            if any(s.start < t.end and t.start < s.end for s in spans):
                if out:  # an entity ends the run before it
                    out[-1].link = Link.BREAK
                cur = None
                continue
            if cur is None:
                cur = Group(t.start, t.end, t.digits, [t], link=g.link, soft=g.soft, blocked=g.blocked)
                out.append(cur)
            else:
                cur.tokens.append(t)
                cur.end, cur.digits = t.end, cur.digits + t.digits
    return out


def _cue_before(start: int, spans: list[Span], cues: list[tuple[int, int, Cue]]) -> Cue | None:
    """The nearest cue before `start` within the window, as a second pass would see it: no floor at the
    previous entity, and each entity in between counted at the length of its placeholder."""
    last: Cue | None = None
    for s, e, cue in cues:
        if e > start:
            break
        shrink = sum(
            sp.end - sp.start - len(sp.label) - 2 for sp in spans if s <= sp.start and sp.end <= start
        )
        if start - s - shrink <= WINDOW:
            last = cue
    return last


def fail_closed(text: str, groups: list[Group], spans: list[Span], lazy: LazyCues) -> bool:
    """Add spans for runs of linked groups no rule took (see `_label`), in place; True if any changed."""
    left = [g for g in groups if (g.soft or not g.blocked) and not _inside(g, spans)]
    if not left or (not spans and sum(len(g.digits) for g in left) < 7):
        return False  # every open group is inside an entity, or what is left is too short for one
    parts = _uncovered(groups, spans) if spans else groups
    cues = lazy.get()
    changed = False
    k, n = 0, len(parts)
    while k < n:
        g = parts[k]
        if _stays(text, g):
            k += 1
            continue
        last = k
        while last + 1 < n and _linked(parts[last], parts[last + 1]) and not _stays(text, parts[last + 1]):
            last += 1
        run = parts[k : last + 1]
        digits = "".join(x.digits for x in run)
        if len(run) >= 3 and all(len(x.digits) == 1 for x in run) and counting(digits):
            k = last + 1
            continue
        soft = any(x.soft for x in run)
        label = _label(digits, _cue_before(g.start, spans, cues), _phone_shaped(text, run), soft)
        if label is None and len(digits) <= 4 and (i := _tail_of(text, g.start, spans)) is not None:
            # "415, 5500, 0163": the shape rules took "415, 5500"; the group the ASR split off is its tail.
            end = parts[last].end
            if spans[i].label == "PHONE" and (m := EXTENSION_RE.match(text, end)):
                end = m.end()
            spans[i] = Span(spans[i].start, end, spans[i].label)
            changed = True
        elif label is not None:
            end = parts[last].end
            if label == "PHONE" and (m := EXTENSION_RE.match(text, end)):
                end = m.end()
            spans.append(Span(g.start, end, label))
            changed = True
        k = last + 1
    return changed

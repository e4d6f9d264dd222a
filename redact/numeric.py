"""Phone, card and SSN spans from digit groups: the longest run of linked groups that is one entity.

Greedy and left to right: from each group, try the longest chain of linked groups first and shrink it
until it classifies. "555-0112, no, sorry, 555-0121" breaks at "no" and gives two phones; "512, um, 555,
um, 0135" is one. A chain joined across sentences ("Two oh one. Five five five. Oh one eight four.") is
accepted only when every group is 2-4 digits long, the way people pause inside a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from redact.card import is_card, luhn_valid
from redact.context import Cue, cue_index, nearest_cue
from redact.numbers import Group, Link, group
from redact.phone import EXTENSION_RE, SERVICE_CODES, is_phone
from redact.spans import Span
from redact.ssn import is_ssn

MAX_GROUPS = 8


def _classify(text: str, seq: Sequence[Group], floor: int, cues: list[tuple[int, int, Cue]]) -> str | None:
    sizes = [len(g.digits) for g in seq]
    if any(g.link is Link.SENTENCE for g in seq[:-1]) and not all(2 <= s <= 4 for s in sizes):
        return None
    if len(seq) >= 3 and all(s == 1 for s in sizes):
        return None  # "one, two, three, four, five": counting or a digit-span test
    digits = "".join(g.digits for g in seq)
    intl = seq[0].intl
    cue = nearest_cue(text, seq[0].start, floor, cues)
    phone_first = intl or digits.startswith("0")  # 0044 20 7946 0958 may pass Luhn by chance
    if not phone_first and is_card(digits, cue):
        return "CARD"
    if cue is not Cue.OTHER_ID:  # "appointment ID is 312 555 0177", "MRN 555-0194" stay
        if not intl and is_ssn(digits, sizes, cue):
            return "SSN"
        if digits not in SERVICE_CODES and is_phone(digits, intl):
            return "PHONE"
    if phone_first and not intl and is_card(digits, cue) and luhn_valid(digits):
        return "CARD"
    return None


def _split_written(text: str, g: Group, floor: int, cues: list[tuple[int, int, Cue]]) -> list[Span]:
    """A written group that is no entity as a whole ("0 0000000000", "12 4111111111111111") may still hold
    a 10-digit or Luhn-valid run that must not survive: segment it again, one token per group."""
    if len(g.tokens) < 2 or max((len(t.digits) for t in g.tokens if not t.spoken), default=0) < 10:
        return []
    parts: list[Group] = []
    for t in g.tokens:  # written tokens alone, runs of spoken words together
        if t.spoken and parts and parts[-1].tokens[-1].spoken:
            prev = parts[-1]
            prev.tokens.append(t)
            prev.end, prev.digits = t.end, prev.digits + t.digits
        else:
            parts.append(Group(t.start, t.end, t.digits, [t], intl=t.plus, link=Link.LOOSE))
    return _segment(text, parts, floor, cues, split=False)


def _segment(
    text: str, groups: list[Group], floor: int, cues: list[tuple[int, int, Cue]], *, split: bool
) -> list[Span]:
    spans: list[Span] = []
    i, n = 0, len(groups)
    while i < n:
        if groups[i].blocked:
            i += 1
            continue
        last = i
        while (
            last + 1 < n
            and last - i < MAX_GROUPS - 1
            and groups[last].link is not Link.BREAK
            and not groups[last + 1].blocked
        ):
            last += 1
        for j in range(last, i - 1, -1):
            label = _classify(text, groups[i : j + 1], floor, cues)
            if label is not None:
                break
        else:
            if split and (inner := _split_written(text, groups[i], floor, cues)):
                spans.extend(inner)
                floor = inner[-1].end
                rest = [t for t in groups[i].tokens if t.start >= floor]
                if rest:  # what follows the split-off run may still join the next groups
                    g = groups[i]
                    digits = "".join(t.digits for t in rest)
                    groups[i] = Group(rest[0].start, g.end, digits, rest, link=g.link)
                    continue
            i += 1
            continue
        start, end = groups[i].start, groups[j].end
        if label == "PHONE" and (m := EXTENSION_RE.match(text, end)):
            end = m.end()
        spans.append(Span(start, end, label))
        floor = end
        i = j + 1
        while i < n and groups[i].start < end:
            i += 1
    return spans


def _fail_closed_label(digits: str, cue: Cue | None) -> str | None:
    """What a digit run the shape rules rejected is, when the words before it say phone, card or SSN.

    Whisper mangles digits it hears fast ("555-123-4-567", "4,10011,1011,111,..."), so in context a run
    is redacted by length alone: a card (any run of 13 digits or more, in card or no context, and 7 or
    more when the speaker says card), a phone (7-15 digits after a phone cue or "my number"), an SSN
    (7 or more after "social"). Numbers labelled as another identifier stay.
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
    return "CARD" if n >= 13 else None


def _fail_closed(text: str, groups: list[Group], spans: list[Span], cues: list[tuple[int, int, Cue]]) -> None:
    """Add spans for runs of linked groups no rule took (see `_fail_closed_label`), in place."""
    k, n = 0, len(groups)
    while k < n:
        g = groups[k]
        if (g.blocked and not g.soft) or any(s.start < g.end and g.start < s.end for s in spans):
            k += 1
            continue
        last = k
        while (
            last + 1 < n
            and groups[last].link is Link.LOOSE
            and not (groups[last + 1].blocked and not groups[last + 1].soft)
            and not any(s.start < groups[last + 1].end and groups[last + 1].start < s.end for s in spans)
        ):
            last += 1
        digits = "".join(x.digits for x in groups[k : last + 1])
        # No floor at the previous entity: the second pass over redacted text must see the same cue.
        label = _fail_closed_label(digits, nearest_cue(text, g.start, 0, cues))
        if label is not None:
            end = groups[last].end
            if label == "PHONE" and (m := EXTENSION_RE.match(text, end)):
                end = m.end()
            spans.append(Span(g.start, end, label))
        k = last + 1


def find_numeric(text: str) -> list[Span]:
    """PHONE / CARD / SSN spans in `text`, in order, not overlapping."""
    groups = group(text)
    if not groups:
        return []
    cues = cue_index(text)
    spans = _segment(text, list(groups), 0, cues, split=True)
    if any(not g.blocked or g.soft for g in groups):
        _fail_closed(text, groups, spans, cues)
        spans.sort(key=lambda s: s.start)
    return spans

"""Phone, card and SSN spans from digit groups: the longest run of linked groups that is one entity.

Greedy and left to right: from each group, try the longest chain of linked groups first and shrink it
until it classifies. "555-0112, no, sorry, 555-0121" breaks at "no" and gives two phones; "512, um, 555,
um, 0135" is one. A chain joined across sentences ("Two oh one. Five five five. Oh one eight four.") is
accepted only when every group is 2-4 digits long, the way people pause inside a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from redact.card import is_card, luhn_valid
from redact.context import Cue, LazyCues, nearest_cue
from redact.fallback import counting, fail_closed
from redact.numbers import Group, Hit, Link, group
from redact.phone import EXTENSION_RE, SERVICE_CODES, is_phone
from redact.spans import Span
from redact.ssn import is_ssn

MAX_GROUPS = 19  # a card read one digit per comma
MAX_DIGITS = 19  # no entity is longer (a card; an international phone has at most 17 with its prefix)


def _digit_by_digit(digits: str, cue: Cue | None) -> bool:
    """Digits said one per comma ("six, one, seven, five, ..."): a number the speaker reads out when a
    phone or card cue comes before, or when it is as long as a phone with its area code (10 or 11 digits:
    a digit-span test is shorter, "seven, four, one, nine, three, eight, two") and does not count up or
    down by one ("one, two, three, ..., ten" is counting)."""
    if counting(digits):
        return False
    return cue is Cue.PHONE or cue is Cue.CARD or len(digits) in (10, 11)


def _classify(seq: Sequence[Group], cue: Cue | None) -> str | None:
    """What the linked groups `seq` are as one number, `cue` the nearest cue before the first."""
    if len(seq) == 1:  # the common case: one group
        digits = seq[0].digits
        sizes = [len(digits)]
    else:
        sizes = [len(g.digits) for g in seq]
        if any(g.link is Link.SENTENCE for g in seq[:-1]) and not all(2 <= s <= 4 for s in sizes):
            return None
        digits = "".join(g.digits for g in seq)
        if len(seq) >= 3 and all(s == 1 for s in sizes) and not _digit_by_digit(digits, cue):
            return None  # "one, two, three, four, five": counting or a digit-span test
    if len(digits) < 7:
        return None  # no entity is this short (the shortest: a 7-digit local phone)
    intl = seq[0].intl
    phone_first = intl or digits.startswith("0")  # 0044 20 7946 0958 may pass Luhn by chance
    if not phone_first and is_card(digits, cue):
        return "CARD"
    if cue is Cue.CARD and 13 <= len(digits) <= 19 and any(t.weak for g in seq for t in g.tokens):
        return "CARD"  # a card read as homophones ("fine, fine, ..."): no issuer prefix to check (fail safe)
    if cue is not Cue.OTHER_ID:  # "appointment ID is 312 555 0177", "MRN 555-0194" stay
        if not intl and is_ssn(digits, sizes, cue):
            return "SSN"
        if digits not in SERVICE_CODES and is_phone(digits, intl):
            return "PHONE"
    if phone_first and not intl and is_card(digits, cue) and luhn_valid(digits):
        return "CARD"
    return None


def _split_written(text: str, g: Group, floor: int, cues: LazyCues) -> list[Span]:
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


def _segment(text: str, groups: list[Group], floor: int, cues: LazyCues, *, split: bool) -> list[Span]:
    spans: list[Span] = []
    i, n = 0, len(groups)
    while i < n:
        if groups[i].blocked:
            i += 1
            continue
        last = i
        size = len(groups[i].digits)
        while (
            last + 1 < n
            and last - i < MAX_GROUPS - 1
            and groups[last].link is not Link.BREAK
            and not groups[last + 1].blocked
            and size + len(groups[last + 1].digits) <= MAX_DIGITS
        ):
            last += 1
            size += len(groups[last].digits)
        if size < 7:  # no entity is this short, nor any run `_split_written` looks for
            i += 1
            continue
        cue = nearest_cue(text, groups[i].start, floor, cues.get())
        for j in range(last, i - 1, -1):
            label = _classify(groups[i : j + 1], cue)
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


def find_numeric(text: str, matches: list[Hit] | None = None) -> list[Span]:
    """PHONE / CARD / SSN spans in `text`, in order, not overlapping. `matches`: `numbers.scan` of the
    text's lower case, if the caller has it."""
    groups = group(text, matches=matches)
    open_digits = sum(len(g.digits) for g in groups if not g.blocked or g.soft)
    if open_digits < 7:  # times, doses, "press 2", "room 214": no entity is this short
        return []
    cues = LazyCues(text)
    spans = _segment(text, list(groups), 0, cues, split=True)
    if fail_closed(text, groups, spans, cues):
        spans.sort(key=lambda s: s.start)
    return spans

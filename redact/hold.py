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
`now` and returns `Batch`es to redact (`redact_batch`) and store, in order. What counts as an open end or
a continuation, and how each is over-redacted, is `redact.edges`.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from redact.edges import (
    PLACEHOLDER,
    TRAIL,
    RedactOne,
    Result,
    continuation_head,
    digits,
    domain_head,
    ends_in_number,
    ends_open,
    head_digits,
    head_unsafe,
    name_tail,
    open_tail,
    over_redact_head,
    over_redact_runs,
    over_redact_tail,
    replace,
    starts_continuation,
    tail_digits,
)

HOLD_S = 2.0  # how long a final may wait for the next one on its track
MAX_PIECES = 3  # finals redacted as one text at most (bounds the wait to MAX_PIECES * HOLD_S)
CONTINUE_S = 10.0  # how long a stored final stays the left side of a continuation
NUMBER_S = 3.0  # how long after a [CARD]/[PHONE] a short digit run is read as that entity's rest
PHONE_WINDOW = 7  # digits in order that give a phone back (a card's 11 is more)


def _decompose(joined: str, redacted: str) -> list[tuple[int, int, str | None]] | None:
    """`redacted` as spans of `joined`: (start, end, None) copied, (start, end, label) replaced by it.

    Each copied part is found at its first place after the previous one (linear time; a regex of lazy
    groups can take exponential time on digit runs). Where that misplaces a cut inside an entity, the
    parts still add up to `redacted`: only which text gets a placeholder can move, never a digit."""
    literals = PLACEHOLDER.split(redacted)
    labels = PLACEHOLDER.findall(redacted)
    first, last = literals[0], literals[-1]
    if not labels:  # nothing replaced: the first and last literal are the same one
        return [(0, len(joined), None)] if redacted == joined else None
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
            m = TRAIL.search(body)
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
    return " ".join([TRAIL.sub("", t.strip()) for t in texts[:-1]] + [texts[-1].strip()]).strip()


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
    after_number: str | None = None  # a final stored within NUMBER_S before ended in this placeholder


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

    left: Result | None = None
    if len(texts) == 1:
        results = [redact(texts[0])]
    else:
        joint = redact_joint(texts, redact, first_stored=batch.stored is not None)
        if batch.stored is not None:
            left, joint = joint[0], joint[1:]
        # Each share once more alone, with its own context: joining can only add placeholders.
        results = []
        for p, (text, counts) in zip(batch.pieces, joint, strict=True):
            again, more = p.redact(text)
            results.append((again, _merge(counts, more)))
    if batch.open_before:
        results[0] = over_redact_head(results[0])
    if batch.open_after:
        results[-1] = over_redact_tail(results[-1])
    return _stream_safe(batch, left, results)


def _stream_safe(batch: Batch, left: Result | None, results: list[Result]) -> list[Result]:
    """What the rules miss at a cut, over-redacted (fail safe) so the stored texts read in order give no
    entity back: a name after an email lead-in then a domain ("write a Henrik Whitfield." "that
    harmfamily.com"), digits on both sides of a cut that make a phone window, and a digit run after a
    [CARD]/[PHONE]. `left`: the stored text's share of the joint redaction (read only)."""
    raws = ([batch.stored] if batch.stored is not None else []) + [p.raw for p in batch.pieces]
    done: list[Result | None] = ([left] if batch.stored is not None else []) + list(results)
    off = 1 if batch.stored is not None else 0
    number = batch.after_number
    for i in range(len(done)):
        cur = done[i]
        if cur is None:
            continue
        if i > 0:
            prev = done[i - 1]
            if name_tail(raws[i - 1]) is not None and domain_head(raws[i]) is not None:
                cur = replace(cur, domain_head(cur[0]))
                if prev is not None and i - 1 >= off:
                    done[i - 1] = replace(prev, name_tail(prev[0]))
            prev = done[i - 1]
            if prev is not None:
                t, h = tail_digits(prev[0]), head_digits(cur[0])
                if h is not None and digits(prev[0], t) + digits(cur[0], h) >= PHONE_WINDOW:
                    cur = replace(cur, h)
                    if i - 1 >= off:
                        done[i - 1] = replace(prev, t)
        if i >= off and number is not None:
            cur = over_redact_runs(cur, number)
        done[i] = cur
        number = ends_in_number(cur[0]) or number
    return [r for r in done[off:] if r is not None]


class TrackHold:
    """Holds the finals of one track whose end may continue in the next (see the module docstring)."""

    __slots__ = ("_chain", "_deadline", "_hold_s", "_last", "_max", "_number", "_recent", "_stored")

    def __init__(self, hold_s: float = HOLD_S, max_pieces: int = MAX_PIECES) -> None:
        self._hold_s = hold_s
        self._max = max(1, max_pieces)
        self._chain: list[Piece] = []
        self._deadline: float | None = None
        self._stored: tuple[str, bool] | None = None  # left side of the held chain, if it continues one
        self._last: tuple[str, bool, float] | None = None  # raw, ended open, when: the last final stored
        self._recent: list[tuple[str, float]] = []  # raw texts stored within NUMBER_S, and when
        self._number: str | None = None  # the held chain's `after_number`

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
        number = self._after_number(piece, now)
        if self._open([piece], stored):
            self._chain = [piece]
            self._stored = stored
            self._number = number
            self._deadline = now + self._hold_s
            return out
        self._last = (piece.raw, False, now)
        self._recent.append((piece.raw, now))
        out.append(
            Batch(
                (piece,),
                stored=stored[0] if stored else None,
                open_before=head_unsafe(piece.raw, stored),
                after_number=number,
            )
        )
        return out

    def _after_number(self, piece: Piece, now: float) -> str | None:
        """The placeholder a final stored within NUMBER_S ended in, if `piece` holds a digit run for it
        to continue. Redacts those few finals once more, only when `piece` holds such a run."""
        self._recent = [r for r in self._recent[-4:] if now - r[1] <= NUMBER_S]
        if not self._recent or over_redact_runs((piece.raw, {}), "PHONE")[0] == piece.raw:
            return None
        for raw, _ in reversed(self._recent):
            try:
                label = ends_in_number(piece.redact(raw)[0])
            except Exception:  # unsure: treat the run as the entity's rest (fail safe)
                label = "PHONE"
            if label is not None:
                return label
        return None

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
        chain, stored, number = tuple(self._chain), self._stored, self._number
        self._chain, self._stored, self._deadline, self._number = [], None, None, None
        self._last = (_joined([p.raw for p in chain]), open_after, now)
        self._recent.append((self._last[0], now))
        return Batch(
            chain,
            stored=stored[0] if stored else None,
            open_before=head_unsafe(chain[0].raw, stored),
            open_after=open_after,
            held=True,
            after_number=number,
        )


__all__ = [
    "HOLD_S",
    "MAX_PIECES",
    "Batch",
    "Piece",
    "TrackHold",
    "continuation_head",
    "ends_open",
    "open_tail",
    "over_redact_head",
    "over_redact_tail",
    "redact_batch",
    "redact_joint",
    "starts_continuation",
]

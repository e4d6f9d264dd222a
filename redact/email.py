"""Email addresses: written ("k.osei@example.org"), spoken ("oliver dot grant at example dot com"),
spelled ("K-O-V-A-C-S at example dot com", "b, e, t, h, all one word, at ...", "m as in Mary, o, r, ...")
and mixed ("tina.marsh at example dot com").

A span runs from the first local-part token to the top-level domain; clarifiers inside the address are
inside, a clarifier after the TLD and sentence punctuation are outside. A spoken address needs a domain
that ends in a known TLD and is not followed by a path ("pay online at example.com/billing" is a URL), and
a first local-part word that is not an ordinary word of the sentence ("pay at portal.example.com").
"""

from __future__ import annotations

import re

from redact.numbers import DIGIT_WORDS, TEENS, TENS
from redact.spans import Span

_LITERAL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+'-]*[A-Za-z0-9_])?"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)

TLDS = (
    "com|org|net|edu|gov|mil|int|io|co|us|uk|ca|de|fr|au|in|nz|ie|info|biz|me|health|care|clinic|ai|app|dev"
    "|email|mail|online|site|tech|today|mx|es|it|nl|br|jp|ch|se|no|dk|fi|be|at|pl|za|sg|hk"
)
# Words that start a sentence around an address but are never its first local-part word.
_STOP = (
    "a|an|the|is|was|are|be|been|it|its|me|my|mine|to|at|from|or|and|but|so|then|also|just|please|email|emails"
    "|e-mail|mail|mailed|address|addresses|send|sent|write|wrote|reach|reached|contact|us|you|your|him|his|her"
    "|hers|them|their|our|we|they|i|he|she|on|in|of|for|by|with|that|this|these|those|here|there|pay|paid"
    "|log|logged|sign|signed|visit|visited|go|went|find|found|check|checked|apply|register|book|booked"
    "|online|located|available|meet|met|work|works|home|live|lives|stay|arrive|look|looking|copy|cc|forward"
    "|reply|respond|message|use|using|try|correct|yes|no|okay|ok|sure|right|actually|um|uh|info|information"
    "|details|more|website|site|web|page|portal|login|account|is|it's|that's|what's|here's|dot|hi|hello"
    "|thanks|thank|call|text|now|today|again|up|out|back|over|any|all|one|word|lowercase|uppercase"
)
_NUM = "|".join([*DIGIT_WORDS, *TEENS, *TENS])
_FIRST = rf"(?!(?:{_STOP})\b)"
_WORD = r"[A-Za-z0-9](?:[A-Za-z0-9._+-]*[A-Za-z0-9])?"
_SPELLED = r"[A-Za-z](?:-[A-Za-z]){1,}"  # K-O-V-A-C-S
_AS_IN = r"[A-Za-z]\s+as\s+in\s+[A-Za-z]+"  # m as in Mary
_LETTERS = rf"(?:{_AS_IN}|{_SPELLED}|[A-Za-z](?![\w'-]))"
_PIECE = rf"(?:{_AS_IN}|{_SPELLED}|{_WORD}(?:\s+(?:{_NUM})\b)*)"
_CLAR = r"(?:,?\s*(?:all\s+one\s+word|one\s+word|no\s+spaces?|all\s+lower\s*case|lower\s*case)\s*,?)"
_JOIN = rf"(?:\s+(?:dot|period|underscore|dash|hyphen|plus)\s+|,\s+(?={_LETTERS})|\s+(?={_LETTERS}))"
_LOCAL = rf"{_FIRST}{_PIECE}(?:{_JOIN}{_PIECE}|{_CLAR}(?=\s*,?\s+at\b|\s+{_LETTERS}))*"
_DLABEL = r"(?!at\b)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DSEP = r"(?:\s+dot\s+|\.)"
_DOMAIN = rf"{_DLABEL}(?:{_DSEP}{_DLABEL})*?{_DSEP}(?:{TLDS})\b(?![./@-]\w|\s+dot\s+\w|/)"

_SPOKEN_RE = re.compile(
    rf"(?<![\w'\u2019@.-])(?P<local>{_LOCAL}){_CLAR}?(?:\s*,?\s+at\s+|\s*@\s*)(?P<domain>{_DOMAIN})",
    re.IGNORECASE,
)


_AT_RE = re.compile(r"\bat\s+|@\s*", re.IGNORECASE)
_DOMAIN_RE = re.compile(_DOMAIN, re.IGNORECASE)
_LOOKBACK = 160  # longest local part said out loud, spelled letters and clarifiers included


def find_emails(text: str) -> list[Span]:
    spans = [Span(m.start(), m.end(), "EMAIL") for m in _LITERAL_RE.finditer(text)] if "@" in text else []
    # The spoken pattern is costly to try at every position: only try it before an "at" that a domain
    # follows, and keep the match that ends at that domain.
    for at in _AT_RE.finditer(text):
        domain = _DOMAIN_RE.match(text, at.end())
        if domain is None or any(s.start < domain.end() and at.start() < s.end for s in spans):
            continue
        for m in _SPOKEN_RE.finditer(text, max(0, at.start() - _LOOKBACK)):
            if m.end() == domain.end():
                spans.append(Span(m.start(), m.end(), "EMAIL"))
                break
            if m.start() > at.start():
                break
    spans.sort(key=lambda s: s.start)
    return spans

"""Email addresses: written ("k.osei@example.org"), spoken ("oliver dot grant at example dot com"),
spelled ("K-O-V-A-C-S at example dot com", "b, e, t, h, all one word, at ...", "m as in Mary, o, r, ...")
and mixed ("tina.marsh at example dot com").

A span runs from the first local-part token to the top-level domain; clarifiers inside the address are
inside, a clarifier after the TLD and sentence punctuation are outside. A spoken address needs a domain
that ends in a known TLD and is not followed by a path ("pay online at example.com/billing" is a URL), and
a first local-part word that is not an ordinary word of the sentence ("pay at portal.example.com").
`find_email_fallback` fails closed where the ASR lost the "at" ("My email is jan.do.example.com"): only
after words that announce an address, see the comment above it.
"""

from __future__ import annotations

import re
from typing import Final

from redact.numbers import NUMBER_WORDS
from redact.spans import Span
from redact.starts import BLOCKS, WORD, find_at, table

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
_DWORD = r"(?!(?:at|dot)\b)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# A domain label may be several words: the ASR splits names ("g mail", "north shore dash clinic").
_DLABEL = rf"{_DWORD}(?:(?:\s+(?:dash|hyphen)\s+|\s+){_DWORD}){{0,4}}"
_DSEP = r"(?:\s+dot\s+|\.)"
_PROVIDERS = r"g\s?mail|hot\s?mail|proton\s?mail|yahoo|outlook|aol|i\s?cloud|comcast"
_DOMAIN = (
    rf"(?:{_DLABEL}(?:{_DSEP}{_DLABEL})*?{_DSEP}(?:{TLDS})\b(?![./@-]\w|\s+dot\s+\w|/)"
    rf"|(?:{_PROVIDERS})\b(?![./@-]\w|\s+dot\b))"  # "at g mail": a webmail provider needs no TLD
)
_AT_RE = re.compile(r"(?<![\w@])(?:at\b\s*|@\s*)", re.IGNORECASE)
_AT_MATCH: Final = _AT_RE.match
_AT_STARTS: Final = table("aA@", WORD + "@")  # `redact.starts`: where _AT_RE may match
_DOMAIN_RE = re.compile(_DOMAIN, re.IGNORECASE)
# On lower-cased text. "a(?<!\wa)" is "\ba" led by a literal, which the engine skips to.
PROVIDER_HINT_RE = re.compile(rf"a(?<!\wa)t\s+(?:{_PROVIDERS})\b")

# The local part of a spoken address is read back from its "at", word by word (see `local_start`).
_STOP_WORDS: Final = frozenset(
    (
        _STOP + "|much|very|well|yeah|hey|got|get|have|has|had|do|does|did|can|could|will|would|should"
        "|may|might|am|not|if|when|where|who|which|what|how|why|let|tell|told|give|gave|need|want"
        "|number|phone|cell|fax|call|called|best|new|old|work|address's|email's|mine's|name|named|spelled"
        "|spell|via|says|say|said|put|puts|update|change|changed|it|reach|into|onto"
    ).split("|")
) - {"info", "one", "word", "all", "lowercase", "uppercase", "dot", "um", "uh"}
_JOIN_WORDS: Final = frozenset(("dot", "period", "underscore", "dash", "hyphen", "plus"))
_FILLERS: Final = frozenset(("um", "umm", "uh", "uhm", "er", "erm", "ah", "hmm", "sorry"))
_PAUSED: Final = frozenset(("clar", "letter", "filler"))  # tokens a comma may stand beside inside an address
_CLARIFIER_RE = re.compile(
    r"(?:that's\s+|that\s+is\s+|it's\s+)?(?:all\s+)?one\s+word|no\s+spaces?|(?:all\s+)?lower\s*case"
    r"|(?:all\s+)?upper\s*case",
    re.IGNORECASE,
)
_AS_IN_RE = re.compile(r"\b[a-z]\s+as\s+in\s+[a-z]+", re.IGNORECASE)  # "m as in Mary": a spelled letter
_TOKEN_RE = re.compile(r"\S+")
_AS_IN_HINT_RE = re.compile(r"as\s+in\s")  # on lower-cased ASCII: what _AS_IN_RE needs, led by a literal
_LOOKBACK = 160  # longest local part said out loud, spelled letters and clarifiers included
_MAX_LOCAL_WORDS = 5  # "mary jo ann smith 1985"; spelled letters and joiners not counted
_MAX_LOCAL_TOKENS = 24


def _is_letters(word: str) -> bool:
    """A spelled letter ("b", "R.") or letters joined by hyphens ("K-O-V-A-C-S")."""
    w = word.rstrip(".")
    return (len(w) == 1 and w.isalpha()) or (len(w) >= 3 and w[1] == "-" and w.replace("-", "").isalpha())


def _is_space(c: str) -> bool:
    """What "\\s" matches in a str pattern (str.isspace), with the ASCII cases inline."""
    o = ord(c)
    if o < 128:
        return o == 32 or 9 <= o <= 13 or 28 <= o <= 31
    return c.isspace()


def _tokens_before(text: str, lo: int, at: int, limit: int) -> list[tuple[int, int]]:
    """The last `limit` runs of non-space characters ("\\S+") of text[lo:at], in order, as
    (start, end): a walk back from `at` (a regex walk over the whole window cost more)."""
    out: list[tuple[int, int]] = []
    i = at
    while i > lo and len(out) < limit:
        while i > lo and _space_at(text, i - 1):
            i -= 1
        if i == lo:
            break
        e = i
        while i > lo and not _space_at(text, i - 1):
            i -= 1
        out.append((i, e))
    out.reverse()
    return out


def _space_at(text: str, i: int) -> bool:
    """`_is_space(text[i])` without making the one-character string for ASCII."""
    o = ord(text[i])
    if o < 128:
        return o == 32 or 9 <= o <= 13 or 28 <= o <= 31
    return text[i].isspace()


def local_start(text: str, at: int) -> int:
    """Start of the local part of an address whose "at" (or "@") begins at `at`, or `at` if none.

    Walks back over the words a speaker says for a local part: names ("jo ann baker"), initials ("R.
    Singh"), digits and number words ("77", "nineteen"), joiners ("dot", "underscore"), spelled letters
    ("b, e, t, h", "K-O-V-A-C-S", "m as in Mary") and clarifiers ("that's one word"). It stops at a
    lead-in or other ordinary word ("my email is", "send it to"), a sentence end, a placeholder, or a
    comma that no spelled letter or clarifier explains ("Thanks, jo at ..." keeps "Thanks,")."""
    lo = max(0, at - _LOOKBACK)
    window = text[lo:at]
    # The two regexes try every position: run them only where their words are (ASCII: lower() then
    # finds whatever IGNORECASE would; other text runs them as is).
    low_window = window.lower() if window.isascii() else ""
    clar: list[tuple[int, int]] = []
    if not low_window or "word" in low_window or "space" in low_window or "case" in low_window:
        clar = [(m.start() + lo, m.end() + lo) for m in _CLARIFIER_RE.finditer(window)]
    as_in: list[tuple[int, int]] = []
    if not low_window or _AS_IN_HINT_RE.search(low_window) is not None:
        as_in = [(m.start() + lo, m.end() + lo) for m in _AS_IN_RE.finditer(window)]
    tokens = _tokens_before(text, lo, at, _MAX_LOCAL_TOKENS)
    start = at
    words = 0
    right_kind = ""  # kind of the token to the right of the current one: "", letter, clar, word, join
    for k in range(len(tokens) - 1, max(-1, len(tokens) - 1 - _MAX_LOCAL_TOKENS), -1):
        s, e = tokens[k]
        raw = text[s:e]
        pause = raw.endswith(("...", "\u2026"))  # "scott... kouth at": a pause inside the address
        comma = raw.endswith(",")
        word = raw.rstrip(",.\u2026") if comma or pause else raw
        low = word.lower()
        in_clar = any(cs <= s and e <= ce + 1 for cs, ce in clar)
        if in_clar:
            kind = "clar"
        elif any(cs <= s and e <= ce + 1 for cs, ce in as_in):
            kind = "letter"
        elif not word or word.startswith("[") or not word[0].isalnum():
            break
        elif _is_letters(word):
            kind = "letter"
        elif word.endswith((".", "?", "!", ":", ";")) or low in _STOP_WORDS:
            break
        elif low in _JOIN_WORDS:
            kind = "join"
        elif low in _FILLERS:
            kind = "filler"  # "john, um, soto at": inside the address, never its first word
        elif low in NUMBER_WORDS or low.isdigit():
            kind = "number"  # "ray dot fisher nineteen", "R Singh 77"
        else:
            kind = "word"
            if words == _MAX_LOCAL_WORDS:
                break
        if comma and kind not in _PAUSED and right_kind not in _PAUSED and right_kind != "":
            break  # "Thanks, jane doe at": a comma no spelling or clarifier explains ends the address
        if kind == "word":
            words += 1
        start = s
        right_kind = kind
    # The walk may end on words that cannot begin an address: a joiner or a clarifier.
    while start < at:
        m = _TOKEN_RE.search(text, start, at)
        if m is None:
            return at
        s, e = m.span()
        low = text[s:e].rstrip(",.\u2026").lower()
        if low in _JOIN_WORDS or low in _FILLERS or any(cs <= s and e <= ce + 1 for cs, ce in clar):
            start = e
            continue
        return s
    return at


# A webmail domain is part of an address wherever it stands ("weren't yahoo.com", "that protonmail.com":
# the ASR garbled the rest); no clinic sends a caller to such a site.
_WEBMAIL_RE = re.compile(
    rf"(?<![\w.@-])(?:{_PROVIDERS}|e\s?mail)(?:\s+dot\s+|\.)(?:com|net)\b(?![.@-]\w|/)", re.IGNORECASE
)
# Lower case; not "[EMAIL]". Led by a character class (the engine skips to it), each branch then looks
# back at that character.
WEBMAIL_HINT_RE = re.compile(
    r"[mayoc](?:(?<=m)(?<!\[em)ail|(?<=y)ahoo|(?<=o)utlook|(?<=a)ol|(?<=c)loud|(?<=c)omcast)"
)


_WEBMAIL_MATCH: Final = _WEBMAIL_RE.match
_WEBMAIL_STARTS: Final = table("ghpyoaiceGHPYOAICE", WORD + ".@-")
# The letter runs a _WEBMAIL_RE match starts with ("g mail": "g"; "gmail.com": "gmail").
_WEBMAIL_FIRST_WORDS: Final = frozenset(
    "gmail g hotmail hot protonmail proton yahoo outlook aol icloud i comcast email e".split()
)
_SAID_AT_RE = re.compile(r"(?<![\w'])(at|that|and)\s+$", re.IGNORECASE)


def _webmail(text: str, spans: list[Span]) -> None:
    """Add, in place, spans for webmail domains no address took, with the words before them that
    `local_start` reads as a local part."""
    for m in find_at(_WEBMAIL_MATCH, text, _WEBMAIL_STARTS, words=_WEBMAIL_FIRST_WORDS):
        if any(s.start < m.end() and m.start() < s.end for s in spans):
            continue
        start = m.start()
        # The word before may be the address's "at" as tiny.en writes it ("sam.re that email.com").
        said_at = _SAID_AT_RE.search(text, max(0, start - 6), start)
        at = said_at.start(1) if said_at is not None else start
        spans.append(Span(min(local_start(text, at), start), m.end(), "EMAIL"))


def _ats(text: str) -> list[re.Match[str]]:
    """`_AT_RE.finditer(text)`, the regex tried only at an "@" or at an "at" that follows no word
    character or "@" (`find_at`, with the second letter checked too: most words starting with "a" are
    not "at")."""
    out: list[re.Match[str]] = []
    i = 0
    n = len(text)
    while i < n:
        o = ord(text[i])
        if o == 64 or o > 127 or ((o == 97 or o == 65) and i + 1 < n and text[i + 1] in "tT"):
            p = ord(text[i - 1]) if i > 0 else 128
            if p > 127 or not _AT_STARTS[p] & BLOCKS:
                m = _AT_MATCH(text, i, n)
                if m is not None:
                    out.append(m)
                    i = m.end() if m.end() > i else i + 1
                    continue
        i += 1
    return out


def find_emails(text: str) -> list[Span]:
    spans = [Span(m.start(), m.end(), "EMAIL") for m in _LITERAL_RE.finditer(text)] if "@" in text else []
    for at in _ats(text):
        domain = _DOMAIN_RE.match(text, at.end())
        if domain is None or any(s.start < domain.end() and at.start() < s.end for s in spans):
            continue
        start = local_start(text, at.start())
        if start == at.start():
            continue  # "pay at portal.example.com": no local part, a URL
        spans.append(Span(start, domain.end(), "EMAIL"))
    if WEBMAIL_HINT_RE.search(text.lower()):
        _webmail(text, spans)
    spans.sort(key=lambda s: s.start)
    return spans


# Fail closed in email context. Whisper drops or mishears the "at" of a spoken address ("jan.do.example.com"
# for "jane dot doe at example dot com", "sam.leat and blampl.com"), so after words that announce an address
# a dotted name is one too. "email"/"e-mail"/"address" (strong): any word.word token up to the end of the
# sentence, TLD or not ("Please email Rachel.ren..."). "send/write/forward ... to" (weak): a dotted name that
# ends in a known TLD. Without such a cue, a dotted name without "@"/"at" is a URL and stays
# ("portal.example.com", "example.com/billing", "www.example.org slash portal").
_CUE_RE = re.compile(  # "(?<!\[)": the placeholder "[EMAIL]" is no cue
    r"(?<![\w\[-])(?:(?P<strong>e-?mail(?:ed|ing|s)?|mail|(?:e-?mail\s+)?address(?:es)?)"
    r"|(?P<weak>send|sent|sending|write|wrote|writing|forward(?:ed|ing)?))(?![\w-])",
    re.IGNORECASE,
)
_CLAUSE_END_RE = re.compile(r"[.?!](?:\s|$)|,\s+(?:and|but|so|or|then)\b", re.IGNORECASE)
_REACH = 8  # words after a cue that may still be its address
_HORIZON = 1000  # characters after a cue that may hold those words
_DOTTED_RE = re.compile(
    r"(?<![\w.@/-])[A-Za-z0-9][\w'-]*(?:\.[A-Za-z0-9][\w-]*)+(?![\w@-]|\.\w|/|\s+slash\b)", re.IGNORECASE
)
_CUE_MATCH: Final = _CUE_RE.match
_CUE_STARTS: Final = table("emaswfEMASWF", WORD + "[-")
# The letter runs a _CUE_RE match starts with ("e-mail": "e").
_CUE_FIRST_WORDS: Final = frozenset(
    "e email emailed emailing emails mail address addresses send sent sending write wrote writing forward"
    " forwarded forwarding".split()
)
_DOTTED_MATCH: Final = _DOTTED_RE.match
_DOTTED_STARTS: Final = table(WORD.replace("_", ""), WORD + ".@/-")
_TLD_END_RE = re.compile(rf"\.(?:{TLDS})$", re.IGNORECASE)
_LEAD_INS = frozenset(
    "is was are to at me it it's its is: email e-mail mail address send sent write wrote forward please"
    " reach contact: my his her their our your".split()
)
_WALK_BACK = 5  # words before a dotted name that may be a misheard local part ("sam.leat and blampl.com")
_WORD_BACK_RE = re.compile(r"(\S+)\s+$")
CONTEXT_HINTS = ("mail", "address", "send", "sent", "writ", "wrote", "forward")


def _walk_back(text: str, start: int, floor: int) -> int:
    """Start of the words just before `start` that belong to the address: back to a lead-in word, the
    cue, a sentence end or a placeholder, at most _WALK_BACK words."""
    for _ in range(_WALK_BACK):
        m = _WORD_BACK_RE.search(text, floor, start)
        if m is None:
            break
        word = m.group(1).lower().rstrip(",")
        if word in _LEAD_INS or word.endswith((".", "?", "!", "]")) or not word[:1].isalnum():
            break
        start = m.start(1)
    return start


_JOINED_RE = re.compile(r"[ \t]*(?:(?:at|and|@)[ \t]+)?", re.IGNORECASE)


def merge_adjacent(text: str, spans: list[Span]) -> list[Span]:
    """One address the ASR split ("a.miff at nampl.org", "sam.leat and blampl.com") is one placeholder."""
    spans = sorted(spans, key=lambda s: s.start)
    out: list[Span] = []
    for s in spans:
        if out and out[-1].end <= s.start and _JOINED_RE.fullmatch(text, out[-1].end, s.start):
            out[-1] = Span(out[-1].start, s.end, "EMAIL")
        else:
            out.append(s)
    return out


def find_email_fallback(text: str, taken: list[Span]) -> list[Span]:
    """Addresses whose "at" the ASR lost, in email context (see above); none overlap `taken`."""
    spans: list[Span] = []
    for cue in find_at(_CUE_MATCH, text, _CUE_STARTS, words=_CUE_FIRST_WORDS):
        # Bounded: each cue looks at most _HORIZON characters ahead (its _REACH words fit), so a text
        # of many cues ("mail mail mail ...") costs linear time, not quadratic.
        horizon = min(len(text), cue.end() + _HORIZON)
        stop = _CLAUSE_END_RE.search(text, cue.end(), horizon)
        end = stop.start() if stop is not None and stop.start() > cue.end() else horizon
        words = text[cue.end() : end].split(None, _REACH)
        if len(words) > _REACH:  # only the first _REACH words
            end = cue.end() + len(text[cue.end() : end]) - len(words[-1])
        floor = cue.end()
        if text.find(".", cue.end(), end) < 0:
            continue  # a dotted name needs its "."
        for m in find_at(_DOTTED_MATCH, text, _DOTTED_STARTS, cue.end(), end):
            token = m.group()
            if cue.lastgroup == "weak" and not _TLD_END_RE.search(token):
                continue
            if any(s.start < m.end() and m.start() < s.end for s in (*taken, *spans)):
                continue
            start = _walk_back(text, m.start(), floor)
            spans.append(Span(start, m.end(), "EMAIL"))
            floor = m.end()
    return spans

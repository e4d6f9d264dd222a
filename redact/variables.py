"""Runtime PHI variables: the values a call carries (patient name, date of birth, MRN, address, ...) are
found in any written or spoken form and replaced by a placeholder named for the variable.

Placeholder names come from a fixed set, never from the caller: a variable's name is chosen by whoever
starts the call and may itself be PHI ("callback 555-123-4567"), and placeholders become stored text,
metric labels and analytics keys. Common keys map to a shared name (`patient_name`, `first_name` -> NAME;
`dob`, `date_of_birth` -> DOB; `mrn` -> MRN; `address` -> ADDRESS; `phone` -> PHONE; `email` -> EMAIL;
`ssn` -> SSN); names the deployment declares (`declare_names`, from configuration) keep their own
upper-cased name (`member_id` -> MEMBER_ID); anything else is VARIABLE.

How each value is found:
* names: the full name in either order, and each part alone ("Jane", "Doe", "DOE", "D-O-E"), titles aside;
* dates (a DOB-like key or a value that parses as a date): every form in `redact.dates`;
* values with 4+ digits (MRN, member ID, phone): the digit sequence however it is written or said
  ("four eight two, one three, double seven"), via the same tokenizer as the phone recogniser;
* emails: the address with written or spoken separators ("jane dot doe at example dot com");
* addresses: the street line with its number written or said ("twelve Elm St."), and the street alone;
* anything else: the literal value, case-insensitive, with flexible whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from redact.dates import date_pattern, parse_date
from redact.numbers import Link, gap_link, tokenize
from redact.spans import Span
from redact.spoken import SEP, cardinal_forms, digit_by_digit

PLACEHOLDER_BY_KEY: dict[str, str] = {
    **dict.fromkeys(
        "name patient_name full_name first_name last_name given_name family_name surname caller_name"
        " patient member_name preferred_name".split(),
        "NAME",
    ),
    **dict.fromkeys("dob date_of_birth birth_date birthdate birthday".split(), "DOB"),
    **dict.fromkeys("mrn medical_record_number record_number chart_number".split(), "MRN"),
    **dict.fromkeys("address street_address home_address street address_line1 address1".split(), "ADDRESS"),
    **dict.fromkeys("phone phone_number callback_number mobile cell telephone".split(), "PHONE"),
    **dict.fromkeys("email email_address".split(), "EMAIL"),
    **dict.fromkeys("ssn social_security_number".split(), "SSN"),
}
_TITLES = frozenset("dr mr mrs ms miss mx prof jr sr ii iii iv md".split())
_STREET_SUFFIXES: dict[str, str] = {
    "street": "st",
    "avenue": "ave|av",
    "road": "rd",
    "drive": "dr",
    "boulevard": "blvd",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "circle": "cir",
    "highway": "hwy",
    "parkway": "pkwy",
    "square": "sq",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
}
_SUFFIX_BY_ABBREV = {abbr: full for full, abbrs in _STREET_SUFFIXES.items() for abbr in abbrs.split("|")}
_DIGIT_WORD_ALT = {d: f"(?:{d}|{'|'.join(sorted(digit_by_digit(d)))})" for d in "0123456789"}
_EMAIL_SEP = r"(?:\s*[.@_+-]\s*|\s+(?:dot|at|underscore|dash|hyphen|plus)\s+)"


VARIABLE = "VARIABLE"
# A declared name is a short identifier, so it can never carry a phone number, an email or a name's text.
_DECLARABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_ -]{0,31}")
_DECLARED: set[str] = set()


def _normalise(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def declare_names(names: Iterable[str]) -> None:
    """The variable names this deployment uses beyond the built-in ones (replaces any earlier set).

    Raises ValueError naming the offending entry's position (never its text) if one is not an identifier.
    """
    chosen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if _DECLARABLE_RE.fullmatch(name) is None:
            raise ValueError(f"declared variable name {position} is not an identifier of [A-Za-z0-9_-], 1-32")
        chosen.add(_normalise(name))
    _DECLARED.clear()
    _DECLARED.update(chosen)
    _compile.cache_clear()


def declared_names() -> frozenset[str]:
    return frozenset(_DECLARED)


def known_placeholders() -> frozenset[str]:
    """Every placeholder a variable can produce now: the built-in names, the declared ones and VARIABLE."""
    return frozenset({*PLACEHOLDER_BY_KEY.values(), *(n.upper() for n in _DECLARED), VARIABLE})


def safe_placeholder(name: str) -> str:
    """`name` (`PHONE` or `[PHONE]`) if it is a placeholder redaction can produce now, else VARIABLE.

    For whatever turns placeholder names into labels, keys or unsealed columns: a name outside the set
    (stored before names were fixed, or unexpected) may itself be PHI.
    """
    from redact.pipeline import DEFAULT_ENTITIES  # the pipeline imports this module

    norm = name.strip().strip("[]").upper()
    return norm if norm in DEFAULT_ENTITIES or norm in known_placeholders() else VARIABLE


def safe_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Placeholder counts with every name outside the set folded into VARIABLE (summed); a name in the set
    keeps the form it was given (`[PHONE]` stays `[PHONE]`)."""
    out: dict[str, int] = {}
    for name, n in counts.items():
        key = str(name) if safe_placeholder(str(name)) != VARIABLE else VARIABLE
        out[key] = out.get(key, 0) + int(n)
    return out


def placeholder_for(key: str) -> str:
    norm = _normalise(key)
    if norm in PLACEHOLDER_BY_KEY:
        return PLACEHOLDER_BY_KEY[norm]
    if norm.endswith("_name") or norm == "name":
        return "NAME"
    if norm in _DECLARED:
        return norm.upper()
    return VARIABLE


@dataclass(frozen=True, slots=True)
class _Matcher:
    label: str
    patterns: tuple[re.Pattern[str], ...]
    digit_values: tuple[str, ...]


def _bounded(body: str) -> str:
    return rf"(?<![\w@]){body}(?![\w@])"


def _name_patterns(value: str) -> list[str]:
    parts = re.findall(r"[^\W\d_][\w'\u2019.-]*[^\W\d_]|[^\W\d_]", value)
    real = [p for p in parts if p.lower().rstrip(".") not in _TITLES and len(p) >= 2]
    hyphen_parts = [h for p in real if "-" in p for h in p.split("-") if len(h) >= 2]
    out = []
    if len(real) >= 2:
        out.append(SEP.join(map(re.escape, real)))
        out.append(SEP.join(map(re.escape, reversed(real))))  # "Doe, Jane"
    for p in real + hyphen_parts:
        out.append(re.escape(p))
        if len(p) >= 3 and p.isalpha():
            out.append(r"[\s,-]{0,3}".join(p))  # spelled: D-O-E, d o e
    return out


def _email_patterns(value: str) -> list[str]:
    parts = [p for p in re.split(r"[.@_+-]", value) if p]
    return [re.escape(value), _EMAIL_SEP.join(map(re.escape, parts))]


def _street_word(word: str) -> str:
    key = word.lower().rstrip(".")
    full = _SUFFIX_BY_ABBREV.get(key, key)
    if full in _STREET_SUFFIXES:
        return rf"(?:{full}|(?:{_STREET_SUFFIXES[full]})\.?)"
    return re.escape(word)


def _address_patterns(value: str) -> list[str]:
    out = [r"\s+".join(map(re.escape, value.split()))]
    line = value.split(",")[0].strip()
    m = re.match(r"(\d+)\s+(.+)", line)
    rest = m.group(2) if m else line
    words = rest.split()
    street = SEP.join(_street_word(w) for w in words)
    if m:
        out.append(rf"(?:{m.group(1)}|{cardinal_forms(int(m.group(1)))}){SEP}{street}")
    if len(words) >= 2:
        out.append(street)  # "Elm Street" alone
    return out


def _alnum_spelled(value: str) -> str:
    chars = [c for c in value if c.isalnum()]
    return r"[\s,.-]{0,3}".join(_DIGIT_WORD_ALT.get(c, re.escape(c)) for c in chars)


def _matcher(key: str, value: str) -> _Matcher | None:
    value = value.strip()
    if not value:
        return None
    label = placeholder_for(key)
    patterns: list[str] = [r"\s+".join(map(re.escape, value.split()))]
    digits = re.sub(r"\D", "", value)
    digit_values: list[str] = []
    when = parse_date(value) if label != "NAME" else None
    if when is not None:
        patterns.append(date_pattern(when))
    elif label == "NAME":
        patterns.extend(_name_patterns(value))
    elif "@" in value:
        patterns.extend(_email_patterns(value))
    elif label == "ADDRESS":
        patterns.extend(_address_patterns(value))
    elif len(digits) >= 4:
        digit_values.append(digits)
        if len(digits) == 11 and digits.startswith("1"):
            digit_values.append(digits[1:])  # a phone said without its country code
        if any(c.isalpha() for c in value) and len(value) <= 24:
            patterns.append(_alnum_spelled(value))
    flags = re.IGNORECASE
    compiled = tuple(re.compile(_bounded(p), flags) for p in patterns if p)
    return _Matcher(label, compiled, tuple(digit_values))


def _digit_hits(text: str, wanted: str, label: str) -> list[Span]:
    """Occurrences of a digit string in the text's number tokens, across pauses and fillers."""
    hits: list[Span] = []
    tokens = [t for t in tokenize(text) if t.digits.isdigit()]
    chain: list[int] = []  # token index per digit of `joined`
    joined = ""

    def flush() -> None:
        pos = joined.find(wanted)
        while pos >= 0:
            first, last = tokens[chain[pos]], tokens[chain[pos + len(wanted) - 1]]
            hits.append(Span(first.start, last.end, label))
            pos = joined.find(wanted, pos + len(wanted))

    for i, tok in enumerate(tokens):
        if i and gap_link(text[tokens[i - 1].end : tok.start]) is Link.BREAK:
            flush()
            chain, joined = [], ""
        chain.extend([i] * len(tok.digits))
        joined += tok.digits
    flush()
    return hits


class CompiledVariables:
    """The matchers for one call's variables; `find(text)` gives non-overlapping spans, longest first."""

    __slots__ = ("_matchers",)

    def __init__(self, matchers: list[_Matcher]) -> None:
        self._matchers = matchers

    def find(self, text: str) -> list[Span]:
        found: list[Span] = []
        for m in self._matchers:
            for pattern in m.patterns:
                found.extend(Span(h.start(), h.end(), m.label) for h in pattern.finditer(text))
            for wanted in m.digit_values:
                found.extend(_digit_hits(text, wanted, m.label))
        found.sort(key=lambda s: (s.start - s.end, s.start))
        chosen: list[Span] = []
        for s in found:
            if s.end > s.start and all(s.end <= c.start or c.end <= s.start for c in chosen):
                chosen.append(s)
        return sorted(chosen, key=lambda s: s.start)


@lru_cache(maxsize=256)
def _compile(items: tuple[tuple[str, str], ...]) -> CompiledVariables:
    matchers = [m for key, value in items if (m := _matcher(key, value)) is not None]
    return CompiledVariables(matchers)


def compile_variables(variables: Mapping[str, str]) -> CompiledVariables:
    """Compiled once per distinct set of variables (a call's lines share them)."""
    return _compile(tuple(sorted((str(k), str(v)) for k, v in variables.items())))

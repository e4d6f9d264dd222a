"""Real Whisper tiny.en output (espeak-ng speech, scripts/make_redaction_asr_corpus.py): no PHI survives.

For every line of tests/data/redaction_asr.jsonl, `redact_text(asr_text)` must leave none of the line's
`phi` behind, however the ASR garbled it:

- a digit value survives if the output's digits (digit words such as "five"/"oh" read as digits, every
  other character dropped) contain the whole value or any 7 consecutive digits of it;
- an email survives if the output holds an "@" between word characters, its domain written or spoken
  ("example.com", "example dot com"), or one of its local-part words (3+ letters) still joined to an
  address-like neighbour ("jane dot ...", "jane.", "jane at ..."). A name said on its own is a NAME,
  redacted through runtime variables, not an email.

No tolerance for PHI. `keep` items (hard negatives: dates, times, doses, prices, years, rooms, service
codes...) must survive where the ASR wrote them as the source did; for them a small tolerance,
KEEP_TOLERANCE, allows for fail-closed redaction of a keep value the ASR glued to a phone or card.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redact import redact_text

CORPUS = Path(__file__).parent / "data" / "redaction_asr.jsonl"
# Issue 14's families spoken by six espeak-ng voices (`make_redaction_asr_corpus.py --set voices`).
VOICES_CORPUS = Path(__file__).parent / "data" / "redaction_asr_voices.jsonl"
# Lines where tiny.en wrote the entity past recognition and the check still reads a fragment of it: no
# rule of the language fits them without redacting ordinary sentences. "reception at north shorenash
# clinic." (the TLD lost: "I'm at North Shore Clinic." has the same shape) and the padded-window baseline's
# "Call 1-Tash 8-Hondry-Din-77-5-..." (digits glued into made-up words). Listed, not skipped: a new leak
# fails, and a fix of one of these fails until it is taken off the list.
KNOWN_GARBLED = frozenset({"asrv-004-5", "asrv-009-4-p"})
KEEP_TOLERANCE = 0.05  # at most this share of applicable keep items may be lost (never PHI)
_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_DIGIT_WORD_RE = re.compile(r"\b(?:" + "|".join(_DIGIT_WORDS) + r")\b", re.IGNORECASE)


def load() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in (CORPUS, VOICES_CORPUS):
        with path.open(encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def output_digits(text: str) -> str:
    spoken = _DIGIT_WORD_RE.sub(lambda m: _DIGIT_WORDS[m.group().lower()], text)
    return re.sub(r"\D", "", spoken)


def digits_survive(value: str, out: str) -> bool:
    digits = output_digits(out)
    if value in digits:
        return True
    return any(value[i : i + 7] in digits for i in range(len(value) - 6))


def email_survives(email: str, out: str) -> bool:
    local, _, domain = email.lower().partition("@")
    low = out.lower()
    if re.search(r"\w\s*@\s*\w", low):
        return True
    label, _, tld = domain.rpartition(".")
    if re.search(rf"\b{re.escape(label)}\s*(?:\.|\bdot\b)\s*{re.escape(tld)}\b", low):
        return True
    for word in re.split(r"[._+-]", local):
        if len(word) >= 3 and re.search(
            rf"\b{re.escape(word)}\s*(?:\.\w|\s+(?:dot|at|underscore|dash)\b|@|_)", low
        ):
            return True
    return False


def phi_survives(item: str, out: str) -> bool:
    return email_survives(item, out) if "@" in item else digits_survive(item, out)


def phi_type(item: str) -> str:
    if "@" in item:
        return "email"
    return {9: "ssn"}.get(len(item), "card" if len(item) >= 13 else "phone")


def keep_present(item: str, text: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(item)}(?![\w])", text) is not None


def score(redact: Callable[[str], str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """PHI items that survive and keep items lost, per type; lines failing each."""
    phi_total: Counter[str] = Counter()
    phi_left: Counter[str] = Counter()
    keep_total = keep_lost = 0
    leaked: list[str] = []
    lost: list[str] = []
    for row in rows:
        out = redact(row["asr_text"])
        for item in row["phi"]:
            kind = phi_type(item)
            phi_total[kind] += 1
            if phi_survives(item, out):
                phi_left[kind] += 1
                leaked.append(f"{row['id']}: {item} | {row['asr_text']!r} -> {out!r}")
        for item in row["keep"]:
            if keep_present(item, row["asr_text"]):
                keep_total += 1
                if not keep_present(item, out):
                    keep_lost += 1
                    lost.append(f"{row['id']}: {item} | {row['asr_text']!r} -> {out!r}")
    return {
        "phi_total": dict(phi_total),
        "phi_left": dict(phi_left),
        "keep_total": keep_total,
        "keep_lost": keep_lost,
        "leaked": leaked,
        "lost": lost,
    }


def report(s: dict[str, Any]) -> str:
    lines = [
        f"  {kind:6s} survived {s['phi_left'].get(kind, 0)}/{n}" for kind, n in sorted(s["phi_total"].items())
    ]
    lines.append(f"  keep   lost {s['keep_lost']}/{s['keep_total']}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return load()


@pytest.fixture(scope="module")
def result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return score(redact_text, rows)


def test_corpus_shape(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 120
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        assert set(row) >= {"id", "source_text", "asr_text", "phi", "keep"}


def test_the_check_sees_what_the_asr_kept(rows: list[dict[str, Any]]) -> None:
    """Without redaction most PHI survives (else the corpus would test nothing); the voices corpus, whose
    addresses tiny.en garbles more, is held to a third."""
    s = score(lambda text: text, [r for r in rows if r["id"].startswith("asr-")])
    total, left = sum(s["phi_total"].values()), sum(s["phi_left"].values())
    assert left >= total // 2, report(s)
    s = score(lambda text: text, [r for r in rows if r["id"].startswith("asrv-")])
    total, left = sum(s["phi_total"].values()), sum(s["phi_left"].values())
    assert left >= total // 3, report(s)


def test_no_phi_survives(result: dict[str, Any]) -> None:
    leaked = [line for line in result["leaked"] if line.split(":", 1)[0] not in KNOWN_GARBLED]
    assert not leaked, report(result) + "\n" + "\n".join(leaked)
    assert {line.split(":", 1)[0] for line in result["leaked"]} == KNOWN_GARBLED


def test_several_voices() -> None:
    rows = load()
    assert len({r["voice"] for r in rows}) >= 8


def test_keep_items_survive(result: dict[str, Any]) -> None:
    assert result["keep_total"] >= 30
    assert result["keep_lost"] <= KEEP_TOLERANCE * result["keep_total"], (
        report(result) + "\n" + "\n".join(result["lost"])
    )


# Finals Whisper wrote in this corpus and beside it, and the hard negatives the fail-closed rules must leave.
OBSERVED: list[tuple[str, str | None]] = [
    ("It is 555-123-4,567", "It is [PHONE]"),
    ("My number is 555-123-4-567", "My number is [PHONE]"),
    ("My card number is 4,10011,1011,111,111,1011,111,1011,111", "My card number is [CARD]"),
    ("The card is 5,955,955,995,955,945,444", "The card is [CARD]"),
    ("My card is 3,714496,358,41", "My card is [CARD]"),
    ("Call me at 415, 5500, 0163.", "Call me at [PHONE]."),
    ("My number is 5, 5, 5, 1, 2, 3, 4, 5, 6, 7", "My number is [PHONE]"),
    ("You can reach me at 6 1 7 5 5 5 0 108", "You can reach me at [PHONE]"),
    ("It's 555-0-1888", "It's [PHONE]"),
    ("Call me at 555 dash 123 dash 4567.", "Call me at [PHONE]."),
    ("My social is 123-45-6,789", "My social is [SSN]"),
    ("My email is jan.do.example.com", "My email is [EMAIL]"),
    ("email the results to sam.leat and blampl.com and to me.", "email the results to [EMAIL] and to me."),
    ("3-mail address is a.miff at nampl.org", "3-mail address is [EMAIL]"),
    ("Send it to mark.com and then we'll not let.", "Send it to [EMAIL] and then we'll not let."),
    ("Visit example.com/billing to pay online.", None),
    ("Check the portal at portal.example.com for your results.", None),
    ("My email is on file, and the portal is portal.example.com.", None),
    ("Visit the website at www.nmpl.com for forms.", None),
    ("My address is 42 Elm St. in Springfield.", None),
    ("The bill came to $1,250 this month.", None),
    ("The total was 2,400 dollars after insurance.", None),
    ("I walked 10,000 steps today.", None),
    ("My number is 30,305.", None),
    ("Call me about the 1,250 bill.", None),
    ("I called them in 2019, 2020 and 2021.", None),
    ("The card ending in 4242 4242 was declined.", None),
    ("Call me on 03.04.2024 please.", None),
    ("The number of refills is 3, and the number of pills is 90.", None),
    ("Your appointment ID is 4,410 2,231.", None),
    ("Repeat after me: seven, four, one, nine, three, eight, two.", None),
    ("ZIP is 30305-1234.", None),
]


@pytest.mark.parametrize(("asr", "expected"), OBSERVED, ids=[f"o{i:02d}" for i in range(len(OBSERVED))])
def test_observed_asr_finals(asr: str, expected: str | None) -> None:
    assert redact_text(asr) == (asr if expected is None else expected)


def test_idempotent_on_corpus(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        once = redact_text(row["asr_text"])
        assert redact_text(once) == once, row["id"]

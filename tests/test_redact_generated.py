"""Rules that generalise: the held-out split of the seeded PHI grammar (`benchmarks/phi_grammar.py`),
one case per family the unseen-line measurement of issue 14 found failing, and hard negatives.

The held-out split is never tuned on (its names, mailbox and organisation words are disjoint from the
tune split's); the thresholds are the issue's: at least 99% of lines exact, at most 0.2% of lines
leaking any letter or digit of an entity, at most 1% over-redacted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.phi_grammar import FIRST_NAMES, LAST_NAMES, generate, score, split
from redact import redact_text

DATA = Path(__file__).parent / "data"


def load(name: str) -> list[dict[str, Any]]:
    with (DATA / f"redaction_gen_{name}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_committed_splits_are_the_generator_output() -> None:
    """The files are what `python benchmarks/phi_grammar.py` writes: nobody edits gold by hand."""
    rows = list(generate())
    for name in ("tune", "heldout"):
        assert load(name) == json.loads(json.dumps(split(rows, name))), name
    assert len(rows) >= 5000
    assert len(FIRST_NAMES) + len(LAST_NAMES) >= 3000


def test_held_out_split_meets_the_thresholds() -> None:
    rows = load("heldout")
    scores = [(row, redact_text(row["text"])) for row in rows]
    results = [(row, out, score(row, out)) for row, out in scores]
    exact = sum(s.exact for _, _, s in results) / len(rows)
    leaked = [(r["id"], r["text"], out) for r, out, s in results if s.leaked]
    over = [(r["id"], r["text"], out) for r, out, s in results if s.over]
    assert len(leaked) <= 0.002 * len(rows), leaked[:10]
    assert len(over) <= 0.01 * len(rows), over[:10]
    assert exact >= 0.99, [(r["id"], out) for r, out, s in results if not s.exact][:10]


# The failing families of issue 14 (made-up lines of the same shapes), as the dev rules redact them.
FAMILIES = [
    # spoken emails: several-word local parts, initials, digits, clarifiers
    ("My email is jo ann baker at outlook dot com.", "My email is [EMAIL]."),
    ("It's R Singh 77 at aol dot com.", "It's [EMAIL]."),
    ("Email me at R. Singh seventy seven at example dot com.", "Email me at [EMAIL]."),
    ("Send it to lee, that's one word, wong at example dot org.", "Send it to [EMAIL]."),
    ("It's maria garcia, all one word, at example dot net, thanks.", "It's [EMAIL], thanks."),
    ("My email is john, um, soto at example.com.", "My email is [EMAIL]."),
    ("Write to reception at example dot org.", "Write to [EMAIL]."),
    # domains of several words, dashes, webmail names the ASR splits
    ("Email intake at north shore dash clinic dot example dot org.", "Email [EMAIL]."),
    ("It's sam dot reyes at g mail dot com.", "It's [EMAIL]."),
    ("My email is tkim at hot mail dot com, all lowercase.", "My email is [EMAIL], all lowercase."),
    ("Send it to ana lopez at proton mail dot com.", "Send it to [EMAIL]."),
    ("The address is billing at valley-health.example.net.", "The address is [EMAIL]."),
    # an address whose "at" the model lost
    ("My email is Sam Reyes, example.com.", "My email is [EMAIL]."),
    # toll-free with a leading "1-"
    ("Call 1-877-555-0199 for billing.", "Call [PHONE] for billing."),
    ("The number is 1 (800) 555-0144.", "The number is [PHONE]."),
    # one digit per comma, "oh" among them; tens-word extensions
    ("It's six one seven, five five five, oh, two, oh, nine.", "It's [PHONE]."),
    ("My number is four, one, five, five, five, five, oh, one, six, three.", "My number is [PHONE]."),
    ("Call me at 415-555-0163, extension two fifty.", "Call me at [PHONE]."),
    ("The office is 212 555 0134, extension thirty one, thanks.", "The office is [PHONE], thanks."),
    # digit words tiny.en mishears inside a run: free, fine, for, won, ate, to, too
    ("My card is 2224 0 0 free 1 3 3 0 0 free 4 4 4.", "My card is [CARD]."),
    ("It's six one seven, fine fine fine, oh one for two.", "It's [PHONE]."),
    ("Call me at 5 won 2 5 5 5 0 1 ate 8.", "Call me at [PHONE]."),
    ("My number is two oh two five five five to too one four.", "My number is [PHONE]."),
    # runs of misheard digit words after a number cue: repeated homophones, homophones at a run's edges
    (
        "The car number is fine, fine, fine, fine, fine, fine, fine, fine, fine, fine",
        "The car number is [PHONE]",
    ),
    (
        "The card number is " + ", ".join(["free"] * 15) + ".",
        "The card number is [CARD].",
    ),
    (
        "The cart number is for, for, for, for, for, for, for, for, for, for, for, for, for, for, for, for.",
        "The cart number is [CARD].",
    ),
    ("My cell is for one fine, fine five fine, oh won eight six.", "My cell is [PHONE]."),
    ("Call me at to one two, five five fine, zero won for seven.", "Call me at [PHONE]."),
    ("My Visa is too two to three, oh oh free one, to two zero oh, three too too too.", "My Visa is [CARD]."),
]


@pytest.mark.parametrize(("text", "expected"), FAMILIES, ids=[f"f{i:02d}" for i in range(len(FAMILIES))])
def test_issue_family(text: str, expected: str) -> None:
    assert redact_text(text) == expected


# Hard negatives near the new rules: "for"/"to" between numbers that are no entity, counting after a
# phone cue, ZIP+4, a digit-span test, "at" before a URL, service codes, a leading "Oh,".
NEGATIVES = [
    "Take one to two tablets every four to six hours for 10 days.",
    "I have been on it for 2 to 3 weeks since 2021.",
    "I'll be there at 4 for 2 hours, from 9 to 5.",
    "We won 3 to 2, and I ate at 6.",
    "It's 5 for 6 dollars, or 7 for 10.",
    "The ZIP is 30305-1234.",
    "Dr. Lee asked me to call. Count with me: one, two, three, four, five, six, seven.",
    "Repeat after me: seven, four, one, nine, three, eight, two.",
    "Log in at portal.example.org for your results.",
    "Please visit oakclinic.example.com/billing to pay.",
    "We met Maria at the clinic at noon.",
    "Press 1 for billing or 2 for the pharmacy.",
    "If this is an emergency, hang up and dial 911.",
    "Oh, okay, I see. Oh, that works.",
    "Your appointment is on March 4, 2025 at 3:30 p.m.",
    "The provider's NPI is 1669428715.",
    # the homophones as words, with and without a number cue before them
    "I've had the cough for four weeks.",
    "Take two to three times a day.",
    "Fine, fine, thank you.",
    "I ate at five.",
    "Please update my phone to two for the week.",
    "My number is the same, fine, fine, thanks for asking.",
    "We won six to two, fine, fine, fine game.",
    "My number is fine fine fine fine fine fine fine",  # no commas: not a digit read one per pause
]


@pytest.mark.parametrize("text", NEGATIVES, ids=[f"n{i:02d}" for i in range(len(NEGATIVES))])
def test_hard_negative_stays(text: str) -> None:
    assert redact_text(text) == text

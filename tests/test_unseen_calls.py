"""The unseen-calls benchmark's leak check (benchmarks/unseen_calls.py): what it counts as an entity
given back, in the forms tiny.en writes, and that its calls are reproducible from the seed."""

from __future__ import annotations

import random

import pytest

from benchmarks.unseen_calls import leaked, make_call

PHONE = {"kind": "phone", "value": "6175550123"}
CARD = {"kind": "card", "value": "4111111111111111"}
EMAIL = {"kind": "email", "value": "maeve.okafor@riversideclinic.org"}


@pytest.mark.parametrize(
    ("item", "text", "gives_back"),
    [
        (PHONE, "Call me on [PHONE].", False),
        (PHONE, "My number is 617 555. [PHONE]", False),  # six digits: not a phone
        (PHONE, "It is six one seven. 5 5 5, oh one two three", True),  # split by the VAD, spoken, "oh"
        (PHONE, "Sure, it is [PHONE] 5550123.", True),  # the last seven
        (PHONE, "six one seven, fine fine fine, oh", True),  # tiny.en's "fine" is a five
        (CARD, "The card number is [CARD]", False),
        (CARD, "It is 4111 1111. 1111 1111", True),
        (CARD, "four won won won, [CARD]", False),
        (EMAIL, "Please write to [EMAIL].", False),
        (EMAIL, "Send it to Maeve Okafor. [EMAIL]", True),  # the local part, split from its domain
        (EMAIL, "[EMAIL] river side clinic dot org", True),  # the domain alone
        (EMAIL, "riverside clinic.org", True),
    ],
)
def test_leak_check(item: dict[str, str], text: str, gives_back: bool) -> None:
    assert leaked(item, text) is gives_back


def test_calls_are_reproducible_from_the_seed() -> None:
    a = [make_call(i, random.Random(7)) for i in range(3)]
    b = [make_call(i, random.Random(7)) for i in range(3)]
    assert [(c.voices, [t.parts for t in c.turns], c.items) for c in a] == [
        (c.voices, [t.parts for t in c.turns], c.items) for c in b
    ]
    assert all(c.items for c in a)

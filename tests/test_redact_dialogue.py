"""An answer is redacted knowing the question before it (the previous turn of the call)."""

from __future__ import annotations

import pytest

from redact import redact_in_dialogue


@pytest.mark.parametrize(
    ("context", "answer", "expected"),
    [
        ("And your email address for the reminder?", "jan.go.example.com", "[EMAIL]"),
        ("What's your email?", "Sure, it is mark.smith.example.org.", "Sure, it is [EMAIL]."),
        ("Which card will you use?", "It is 4,10011,1011,111", "It is [CARD]"),
        ("What is the best number to reach you?", "It's 555-0-1888", "It's [PHONE]"),
    ],
)
def test_the_question_makes_the_answer_phi(context: str, answer: str, expected: str) -> None:
    assert redact_in_dialogue(answer, context=context).text == expected


@pytest.mark.parametrize(
    ("context", "answer"),
    [
        ("And your email address for the reminder?", "I will be there at 3:30."),
        ("What is the best number to reach you?", "Take 20 mg twice a day."),
        ("Which card will you use?", "Room 12, on March 4th 2024."),
        ("Anything else?", "The portal is portal.example.com."),  # no email cue: a URL stays
    ],
)
def test_hard_negatives_stay_whatever_was_asked(context: str, answer: str) -> None:
    assert redact_in_dialogue(answer, context=context).text == answer


def test_context_only_adds_placeholders() -> None:
    plain = "Call me at 555-123-4567."
    assert redact_in_dialogue(plain, context="Thanks, bye.").text == "Call me at [PHONE]."
    assert redact_in_dialogue(plain).counts == {"PHONE": 1}

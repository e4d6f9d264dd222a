"""Cross-utterance leaks seen in the real stored output of the bundled models on unseen calls (issue 14
item 1), replayed through `TrackHold` + `redact_batch` exactly as stored, one final at a time: the stored
texts read in order give back no phone (7 digits in order), card (11) or email local part or domain; and
the hard negatives beside them are stored as they are."""

from __future__ import annotations

import re

import pytest

from redact.edges import ends_open, over_redact_tail
from redact.hold import Batch, Piece, redact_batch
from tests.phi_sweep import stream_leaks
from tests.test_hold import red, stored_stream

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")


def longest_digit_run(texts: list[str]) -> int:
    """The most digits the stored texts give in order between two placeholders, read as one text (words
    between them ignored: the strictest reading of the stream)."""
    return max(len(re.sub(r"\D", "", part)) for part in _PLACEHOLDER.split(" ".join(texts)))


GAPS = [0.5, 1.5, 2.5]  # next final within the bound, near it, after it (every hold expires)


@pytest.mark.parametrize("gap", GAPS)
def test_name_after_write_a_then_that_domain(gap: float) -> None:
    """base model: "write to" heard as "write a", "at" as "that"; a name, then a domain."""
    texts = stored_stream(["Please write a Henrik Whitfield.", "that harmfamily.com"], [0.0, gap])
    stream = " ".join(texts)
    for word in ("henrik", "whitfield", "harmfamily"):
        assert word not in stream.lower(), texts
    assert stream_leaks(stream, [], [("henrik.whitfield", "harmfamily.com")]) == [], texts
    assert texts[0].startswith("Please write"), texts  # the lead-in stays


def test_a_name_after_write_a_is_held_and_over_redacted_at_the_bound() -> None:
    assert ends_open("Please write a Henrik Whitfield.")
    assert over_redact_tail(red("Please write a Henrik Whitfield.")) == (
        "Please write a [EMAIL].",
        {"EMAIL": 1},
    )
    assert not ends_open("Please write a letter to the clinic.")
    assert not ends_open("I will write a note.")


@pytest.mark.parametrize("gap", GAPS)
def test_digits_glued_to_a_word_then_a_digit_run(gap: float) -> None:
    """tiny.en with a prompt: "Sure, aton3, 1." then "2 5 5 5 0 1 6 1": ten digits of a phone."""
    assert ends_open("Sure, aton3, 1.")
    texts = stored_stream(["Sure, aton3, 1.", "2 5 5 5 0 1 6 1"], [0.0, gap])
    assert longest_digit_run(texts) < 7, texts
    assert stream_leaks(" ".join(texts), ["3125550161"], []) == [], texts


@pytest.mark.parametrize("gap", [0.5, 1.0, 1.4])
def test_a_digit_run_after_a_card_placeholder(gap: float) -> None:
    """tiny.en: a card's last digits two utterances after its [CARD], a stray "I" between."""
    finals = [
        "The car number is fine, fine, fine, fine, fine, fine, fine, fine, fine, fine",
        "I",
        "[CARD]",
        "I in 4 4 4 4 4",
    ]
    texts = stored_stream(finals, [0.0] + [gap] * 3)
    assert "4" not in texts[3] and texts[3].startswith("I in"), texts
    assert longest_digit_run(texts) < 7, texts


def test_digits_across_a_cut_make_no_phone_window_even_when_the_rules_miss_them() -> None:
    """Stored-side share and the new head together: 3 + 5 digits, no cue the rules would see."""
    texts = stored_stream(["Sure, it's 3 1 2.", "5 5 5 0 1 and so on."], [0.0, 0.5])
    assert longest_digit_run(texts) < 7, texts


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize(
    "finals",
    [
        ["I take it at night.", "Two tablets."],
        ["Room 214.", "Thank you."],
        ["I'll see you at 3.", "Bye."],
        ["My card is [CARD].", "Thanks, that's all."],
        ["Please write a letter.", "That helps."],
    ],
)
def test_hard_negatives_are_stored_as_they_are(finals: list[str], gap: float) -> None:
    assert stored_stream(finals, [0.0, gap]) == finals


def test_a_run_long_after_a_card_is_kept() -> None:
    texts = stored_stream(["[CARD]", "Take 500 milligrams."], [0.0, 5.0])
    assert texts == ["[CARD]", "Take 500 milligrams."]


def _blind(text: str) -> tuple[str, dict[str, int]]:
    """A redactor that sees no email: what the hold itself must make safe at the cut."""
    return text, {}


def test_name_then_domain_is_over_redacted_even_where_the_rules_see_no_address() -> None:
    pieces = (Piece(0, "Please write a Henrik Whitfield.", _blind), Piece(1, "that harmfamily.com", _blind))
    assert [t for t, _ in redact_batch(Batch(pieces, held=True))] == ["Please write a [EMAIL].", "[EMAIL]"]
    late = Batch((Piece(1, "harmfamily.com, thanks.", _blind),), stored="Please write to Henrik Whitfield.")
    assert redact_batch(late) == [("[EMAIL], thanks.", {"EMAIL": 1})]
    # No lead-in before the name: a domain alone is not read as an address's half.
    plain = Batch((Piece(1, "example.com is down.", _blind),), stored="I met Henrik Whitfield.")
    assert redact_batch(plain) == [("example.com is down.", {})]

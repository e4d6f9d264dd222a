"""benchmarks/models.py's number reading: spoken and written numbers compare alike, so a model is scored on
the value it kept, not on whether it wrote digits."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # models.py imports siblings
_SAVED = structlog.get_config()
from benchmarks.models import _contains, _number_turns, canon, make_calls, spoken  # noqa: E402

structlog.configure(**_SAVED)  # benchmarks/common.py quiets structlog when imported: not for other tests


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Take fifty milligrams.", ["take", "50", "milligrams"]),
        ("Take 50 mg.", ["take", "50", "milligrams"]),
        ("on March fourteenth at two thirty", ["on", "march", "14", "at", "2", "30"]),
        ("March 14th at 2:30 p.m.", ["march", "14", "at", "2", "30", "p", "m"]),
        ("the copay is $45", ["the", "copay", "is", "dollars", "45"]),
        ("three hundred and twelve", ["312"]),
        ("twenty first of May", ["21", "of", "may"]),
        ("Sure, it is [PHONE].", ["sure", "it", "is", "phone"]),
    ],
)
def test_canon(text: str, tokens: list[str]) -> None:
    assert canon(text) == tokens


def test_each_number_item_matches_its_spoken_text_and_the_ways_whisper_writes_it() -> None:
    turns, items = _number_turns(random.Random(3))
    spoken_text = canon(" ".join(t for pair in turns for t in pair))
    assert all(any(_contains(spoken_text, f) for f in item.forms) for item in items)
    time = next(i for i in items if i.kind == "time")
    hour, minute = time.forms[0]
    assert any(_contains(canon(f"at {hour}{minute} in the"), f) for f in time.forms)  # "at 1030"
    assert not any(_contains(canon(f"at {spoken(int(hour) % 12 + 1)} {minute}"), f) for f in time.forms)


def test_calls_mix_synthesisers_and_carry_numbers() -> None:
    calls = make_calls(12, 2217)
    voices = {v.split(":")[0] for mc in calls for v in mc.call.voices}
    assert {"festival", "flite"} <= voices and any(":" not in v for mc in calls for v in mc.call.voices)
    assert all(len(mc.numbers) == 5 and mc.call.items for mc in calls)

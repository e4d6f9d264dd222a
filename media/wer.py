"""Word error rate with one text normalisation shared by references and hypotheses.

Normalisation: lower case; "%" -> " percent"; hyphens and slashes between tokens split them
(so "555-123-4567" and "555 123 4567" agree); other punctuation removed (apostrophes inside words kept);
number words written out ("twenty three", "two") become digits, so "2 weeks" and "two weeks" agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000}
_ORDINALS = {"first": "1st", "second": "2nd", "third": "3rd"}  # kept as words: "second floor" is ambiguous

_PUNCT = re.compile(r"[^\w\s']")
_SPLIT = re.compile(r"(?<=\w)[-/](?=\w)")


def normalize(text: str) -> list[str]:
    """Lower-case word tokens with punctuation removed and number words turned into digits."""
    text = text.lower().replace("%", " percent")
    text = _SPLIT.sub(" ", text)
    text = _PUNCT.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return _numbers_to_digits([w for w in words if w])


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Collapse runs of number words into one digit string ("twenty three" -> "23", "oh" alone stays)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "oh" or not (w in _UNITS or w in _TENS):
            out.append(w)
            i += 1
            continue
        total, current = 0, 0
        while i < len(words):
            w = words[i]
            if w in _UNITS and w != "oh":
                if current % 10 or (_UNITS[w] >= 10 and current % 100):
                    break  # "five five" is two numbers, not 10; "twenty eleven" likewise
                current += _UNITS[w]
            elif w in _TENS:
                if current % 100:
                    break
                current += _TENS[w]
            elif w in _SCALES and current:
                current *= _SCALES[w]
                if _SCALES[w] == 1000:
                    total, current = total + current, 0
            elif (
                w == "and"
                and current >= 100
                and i + 1 < len(words)
                and (words[i + 1] in _UNITS or words[i + 1] in _TENS)
            ):
                pass
            else:
                break
            i += 1
        out.append(str(total + current))
    return out


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance over tokens (substitutions, insertions, deletions each cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one pair (errors / reference words; 0.0 for two empty texts)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> float:
    """Word error rate over many (reference, hypothesis) pairs: total errors / total reference words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref = normalize(reference)
        errors += edit_distance(ref, normalize(hypothesis))
        words += len(ref)
    return errors / words if words else 0.0

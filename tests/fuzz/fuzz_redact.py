"""atheris: `redact_text` never raises, its output is a fixed point, and no 10-digit or Luhn-valid 13-19
digit run survives it (a labelled identifier aside, see `tests.fuzz.seeds.surviving_runs`). Run via
scripts/fuzz.sh."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from redact import redact_text

from tests.fuzz.seeds import surviving_runs

ALPHABET = "0123456789 -.,/:()+#@x" + "abcdefghijklmnopqrstuvwxyz" + "\u0660\u0665\uff15\u00a0"
WORDS = ["five", "oh", "double", "ext", "card", "phone", "social", "at", "dot", "plus", "MRN", "number"]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    else:  # transcript-like: digits, separators, number words
        parts = []
        while fdp.remaining_bytes() and len(parts) < 60:
            if fdp.ConsumeIntInRange(0, 5) == 0:
                parts.append(" " + WORDS[fdp.ConsumeIntInRange(0, len(WORDS) - 1)] + " ")
            else:
                parts.append(ALPHABET[fdp.ConsumeIntInRange(0, len(ALPHABET) - 1)])
        text = "".join(parts)
    out = redact_text(text)
    assert surviving_runs(out) == [], (text, out)
    assert redact_text(out) == out, ("not idempotent", text, out)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

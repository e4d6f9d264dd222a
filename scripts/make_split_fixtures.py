"""Generate fixtures/call_split_phi: a two-track call whose patient pauses inside a phone number and two
email addresses, so the VAD cuts each entity into two utterances (espeak-ng + sox, deterministic).

    .venv/bin/python scripts/make_split_fixtures.py [--out fixtures]

The pause (PAUSE_S) is well past the VAD's end of utterance (media.vad: 0.3 s of silence), so each half
is its own final; the call's stored transcript, read in order, must still hold no entity (redact.hold,
tests/test_phi_sweep.py). Written as 16 kHz FLAC like fixtures/call_phi.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import ASR_RATE, espeak, silence, write_flac

PAUSE_S = 1.0  # inside an entity
GAP_S = 0.6  # between turns
# (track, voice, wpm, parts): the parts of one turn are said with PAUSE_S between them.
TURNS: list[tuple[int, str, int, tuple[str, ...]]] = [
    (0, "en-us", 150, ("What is the best phone number to reach you?",)),
    (1, "en-gb", 130, ("My number is five five five, two one three,", "four seven six two.")),
    (0, "en-us", 150, ("And your email address?",)),
    (1, "en-gb", 130, ("Please write to reception", "at northfield clinic dot org.")),
    (0, "en-us", 150, ("Is there another address?",)),
    (1, "en-gb", 130, ("Yes, send a copy to sam dot reyes", "at example dot com.")),
    (0, "en-us", 150, ("Thank you, that is all.",)),
]
PHI = ["5552134762", "555-213-4762", "reception@northfieldclinic.org", "sam.reyes@example.com"]
# What the check reads as an entity: the digits, each address and each domain (tests/test_phi_sweep.py).
EMAILS = [["reception", "northfieldclinic.org"], ["sam.reyes", "example.com"]]


def make(out: Path, tmp: Path) -> None:
    rate = ASR_RATE
    d = out / "call_split_phi"
    d.mkdir(parents=True, exist_ok=True)
    tracks: list[list[np.ndarray]] = [[silence(0.5, rate)], [silence(0.5, rate)]]
    for track, voice, wpm, parts in TURNS:
        said: list[np.ndarray] = []
        for i, text in enumerate(parts):
            if i:
                said.append(silence(PAUSE_S, rate))
            said.append(espeak(voice, wpm, text, rate, tmp))
        speech = np.concatenate(said)
        tracks[track].append(speech)
        tracks[1 - track].append(silence(len(speech) / rate, rate))
        for t in tracks:
            t.append(silence(GAP_S, rate))
    for track, name in enumerate(["0-agent.flac", "1-patient.flac"]):
        write_flac(d / name, np.concatenate(tracks[track]), rate, tmp)
    fixture = {"expected": {"phi": PHI, "emails": EMAILS, "content_words": ["number", "email"]}}
    (d / "fixture.json").write_text(json.dumps(fixture, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "fixtures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as t:
        make(args.out, Path(t))


if __name__ == "__main__":
    main()

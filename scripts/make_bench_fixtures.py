"""Generate the benchmark call fixtures under fixtures/bench/ with espeak-ng and sox (deterministic).

    .venv/bin/python scripts/make_bench_fixtures.py [--out fixtures/bench]

Ten one-track calls of about 45 s (`NN.opus`, Ogg Opus 24 kb/s, 16 kHz mono), each 10-12 utterances of
1.5-5 s in two alternating espeak voices (a mixed-down phone call) separated by 1-2.5 s pauses. Half of the
calls carry a faint seeded pink-noise floor (-62 dBFS, under the VAD energy gate) so silent stretches are
not all digital zeros. None of the sentences is in the accuracy set (fixtures/asr), and none holds digits.

`manifest.json` lists each call's utterances with their text and the sample-exact speech bounds
(`start`, `end` in seconds: espeak's own leading/trailing silence trimmed), which the benchmarks use as
the ground-truth end of speech. Pause lengths, voices and speeds come from a seeded generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import ASR_RATE, espeak, pink_noise, silence, write_opus

CALLS = 10
SEED = 20240605
VOICES = ["en-us", "en-gb", "en-us+f3", "en+m3", "en-gb-x-rp", "en-us+f2", "en-029", "en-gb-scotland"]
WPM = (135, 175)
PAUSE = (1.0, 2.5)  # seconds between utterances
LEAD, TAIL = 0.6, 1.2  # seconds of silence before the first and after the last utterance
NOISE_DBFS = -62.0
TRIM_DBFS = -50.0  # speech bounds: first/last 10 ms block at or above this level

# Clinic-call sentences (unseen by the accuracy set), 5-14 words, no digits: tiny.en hears espeak's digits
# poorly and the redactor would rewrite them, so the words stay comparable.
SENTENCES: list[str] = [
    "Good afternoon, thanks for calling the family practice.",
    "I saw the doctor last week and she changed my dose.",
    "Could you send the form to my new home address?",
    "My husband will drive me to the hospital.",
    "The office manager said to call back after lunch.",
    "I think I left my glasses in the waiting room.",
    "Let me pull up your chart for a moment.",
    "The cough gets worse at night when I lie down.",
    "Do I need to fast before the blood test?",
    "We usually recommend a follow up visit in a month.",
    "Can the nurse explain how to use the inhaler?",
    "I would rather come in early in the morning.",
    "The new tablets make me feel a little sleepy.",
    "Please check the box next to each symptom you have.",
    "Is there somebody who can help me with the paperwork?",
    "Your next appointment is with the physical therapist.",
    "I have had a headache on and off all week.",
    "The clinic moved to the building across the street.",
    "Should I keep taking the antibiotics until they run out?",
    "We can send the results to your pharmacy directly.",
    "My son needs a note for school about his asthma.",
    "The doctor is running about twenty minutes late today.",
    "I am not sure which form the insurance company wants.",
    "Try to rest and keep your leg raised.",
    "Could you ask the doctor to call me this evening?",
    "The swelling has gone down since the weekend.",
    "We do not have any openings until next month.",
    "Is it safe to take this with my other medicine?",
    "The front desk can print a copy of your records.",
    "I would like to switch to a doctor closer to home.",
    "Please wear a mask when you come into the clinic.",
    "My back has been stiff every morning this week.",
    "The pharmacist told me to take it with food.",
    "We will need your signature on the consent form.",
    "Can I bring my mother with me to the appointment?",
    "The rash started on my arm and spread to my neck.",
    "Let me transfer you to the billing department.",
    "I lost the instructions for the eye drops.",
    "The doctor would like to order an x ray.",
    "Do you know if the lab is open over lunch?",
    "I feel much better since I started the new diet.",
    "Remember to stop eating a few hours before the procedure.",
    "The parking garage is behind the main building.",
    "I keep waking up in the middle of the night.",
    "Your prescription was sent to the store on the corner.",
    "Is the flu shot available for children as well?",
    "The specialist wants a few more tests first.",
    "Please call us right away if the fever comes back.",
    "My daughter hurt her wrist playing football.",
    "The waiting list for the sleep clinic is quite long.",
    "Could you repeat that a little more slowly?",
    "I have been drinking more water like you said.",
    "The nurse will meet you at the front entrance.",
    "We need to update your emergency contact.",
    "I am allergic to penicillin and to peanuts.",
    "The medicine tastes terrible but it seems to work.",
    "You can pick up the crutches from the supply room.",
    "How often should I change the bandage?",
    "The doctor said the scan looked completely normal.",
    "My grandmother needs help getting to her appointments.",
    "We can offer you a video visit instead.",
    "I would like a copy of my vaccination history.",
    "The pain is sharp when I turn my head.",
    "Please fill out the questionnaire before your visit.",
    "Is there a charge for cancelling on short notice?",
    "The hospital will call you to set up the surgery.",
    "I ran out of my allergy pills yesterday.",
    "Take one tablet in the morning and one at night.",
    "My ears have been ringing since the flight.",
    "The clinic closes early on the last Friday of the month.",
    "Could the doctor write a letter for my employer?",
    "I noticed some bruising after the blood draw.",
    "We will check your blood pressure when you arrive.",
    "My appetite has not been great lately.",
    "The new patient forms are on our website.",
    "Do you accept walk in patients on weekends?",
    "I have trouble swallowing the large capsules.",
    "The dentist referred me to your office.",
    "Please let us know if your phone number changes.",
    "I get short of breath when I climb a hill.",
    "The therapist gave me a sheet of stretches.",
    "Can I get the results over the phone?",
    "My knee clicks when I bend it all the way.",
    "The doctor needs to review the last set of labs.",
    "We can mail you a reminder card.",
    "I started feeling dizzy after the second dose.",
    "The pharmacy near my house closed last month.",
    "Is it normal to feel tired after the infusion?",
    "Please bring your insurance card and a photo ID.",
    "I would like to talk to a nurse about my diet.",
    "The stitches can come out in about ten days.",
    "My husband has the same cold as me.",
    "We have you down for a check up next week.",
    "The cream helped but the itching came back.",
    "Could you check whether my referral was approved?",
    "I cannot sleep because of the pain in my shoulder.",
    "The lab results should be ready by the end of the week.",
    "Please use the side door after six in the evening.",
    "My father is confused about his new medication.",
    "The doctor recommends walking for half an hour a day.",
    "Do you have an interpreter who speaks Spanish?",
    "I think the pharmacy gave me the wrong strength.",
    "The ultrasound is scheduled for early next week.",
    "We will call you as soon as a slot opens up.",
    "My feet swell up by the end of the day.",
    "The receptionist can help you with the forms.",
    "Should I go to the emergency room or wait?",
    "The vaccine might make your arm sore for a day.",
    "I would like to renew my sick note.",
    "The doctor will see you in room four.",
    "My vision gets blurry when I read for a long time.",
    "Please avoid alcohol while you take these pills.",
    "Can I have the appointment by phone instead?",
    "The physical therapy sessions are twice a week.",
    "I have a rash that will not go away.",
    "We are sorry for the long wait on the line today.",
    "The nurse practitioner can see you this afternoon.",
    "My chest feels tight when I breathe in deeply.",
    "The pharmacy needs a new prescription from the doctor.",
    "Thanks for your help, have a good day.",
]


def speech_bounds(pcm: np.ndarray, rate: int) -> tuple[int, int]:
    """First and last sample of speech: the outermost 10 ms blocks at or above TRIM_DBFS."""
    block = rate // 100
    n = len(pcm) // block
    x = pcm[: n * block].astype(np.float64).reshape(n, block)
    db = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-6) / 32768.0**2)
    loud = np.flatnonzero(db >= TRIM_DBFS)
    if loud.size == 0:
        raise ValueError("espeak produced no audible speech")
    return int(loud[0] * block), int((loud[-1] + 1) * block)


def make_bench(out: Path, tmp: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(SENTENCES))
    cursor = 0
    calls = []
    for c in range(CALLS):
        n_utts = int(rng.integers(10, 13))
        voices = rng.choice(VOICES, size=2, replace=False)
        parts = [silence(LEAD, ASR_RATE)]
        t = len(parts[0])
        utts = []
        for u in range(n_utts):
            text = SENTENCES[order[cursor % len(SENTENCES)]]
            cursor += 1
            voice = str(voices[u % 2])
            wpm = int(rng.integers(WPM[0], WPM[1] + 1))
            speech = espeak(voice, wpm, text, ASR_RATE, tmp)
            lo, hi = speech_bounds(speech, ASR_RATE)
            speech = speech[lo:hi]
            utts.append(
                {
                    "start": round(t / ASR_RATE, 3),
                    "end": round((t + len(speech)) / ASR_RATE, 3),
                    "text": text,
                    "voice": voice,
                    "wpm": wpm,
                }
            )
            parts.append(speech)
            t += len(speech)
            gap = silence(TAIL if u == n_utts - 1 else float(rng.uniform(*PAUSE)), ASR_RATE)
            parts.append(gap)
            t += len(gap)
        pcm = np.concatenate(parts)
        noisy = c % 2 == 1
        if noisy:
            floor = pink_noise(len(pcm) / ASR_RATE, ASR_RATE, rms_dbfs=NOISE_DBFS, seed=SEED + c)
            pcm = np.clip(pcm.astype(np.int32) + floor[: len(pcm)], -32768, 32767).astype(np.int16)
        name = f"{c:02d}.opus"
        write_opus(out / name, pcm, ASR_RATE)
        calls.append(
            {
                "file": name,
                "duration": round(len(pcm) / ASR_RATE, 3),
                "noise_floor": noisy,
                "utterances": utts,
            }
        )
    manifest = {"generator": "scripts/make_bench_fixtures.py", "seed": SEED, "calls": calls}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "fixtures" / "bench"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as t:
        make_bench(args.out, Path(t))


if __name__ == "__main__":
    main()

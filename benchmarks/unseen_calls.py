"""Unseen calls, replayed as QA replays them: does any call's stored transcript give an entity back?

    .venv/bin/python benchmarks/unseen_calls.py [--calls 28] [--seed S] [--model NAME] [--keep DIR]

Each call is made fresh from a seed (never from the committed fixtures, and the rules are never tuned on
it): one or two tracks on one timeline, voices and speeds the fixtures do not use (espeak-ng's Scottish,
RP, Caribbean, New York, West Midlands and Lancaster voices, with +f2/+m2 variants, 125-165 wpm), some calls
with line noise or telephone band-limiting, and PHI read the ways callers read it: phones one digit at a
time or in groups, with "oh"; cards in groups of four; email addresses spelled out as words. Most entities
are spoken with a pause in the middle longer than the segmenter's end-of-speech silence, so the VAD cuts the
entity across two utterances (the case that leaked before the hold).

Every call goes through `converse-worker replay --json --concurrency 2` in a subprocess, then
`transcripts show CALL --json` (the stored, redacted record). Each call's utterances, read in time order
across tracks, are one text; an item is LEAKED when that text still holds a phone's 7-digit window, a
card's 11-digit window (spoken digits and the words tiny.en writes for them counted as digits, separators
dropped), or an email's local part or domain. WER compares the stored text with the ideal redacted text
(entities as placeholders), lower-cased, punctuation dropped.

Prints human lines; the LAST line is one JSON object. Writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script: import the working tree's packages

from media.wer import edit_distance, normalize  # noqa: E402 - after the sys.path line above

RESULTS = ROOT / "benchmarks" / "results"
SEED = 1912  # never used for tuning: change it to get another unseen set
RATE = 48_000
VOICES = ("en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbcwmd", "en-gb-x-gbclan")
VARIANTS = ("", "", "+f2", "+m2")
PAUSE_S = (0.7, 1.4)  # inside an entity: well past the segmenter's 0.3 s end-of-speech silence
GAP_S = (0.5, 1.0)  # between turns
DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
# What tiny.en writes for digits (spoken and misheard) when reading a transcript back as digits.
_AS_DIGIT = {
    **{w: str(i) for i, w in enumerate(DIGIT_WORDS)},
    "oh": "0", "o": "0", "free": "3", "fine": "5", "for": "4", "won": "1", "ate": "8", "to": "2", "too": "2",
}  # fmt: skip

FIRST = "maeve tobias ingrid rafael priya dmitri colette oluwaseun henrik anouk desmond keiko".split()
LAST = "gallagher okafor lindqvist moreau castellano whitfield nakamura brennan adeyemi fairweather".split()
ORGS = ["riverside clinic", "northgate health", "lakeview care", "st brigid medical", "harbor family"]
TLDS = ("org", "com", "net")


@dataclass
class Turn:
    track: int
    parts: list[str]  # spoken with a pause between parts
    ideal: str  # the transcript with entities as placeholders


@dataclass
class Call:
    name: str
    turns: list[Turn]
    voices: list[str]
    wpm: list[int]
    noise_db: float | None
    phone_band: bool
    items: list[dict[str, str]] = field(default_factory=list)  # {"kind", "value"}


def _spoken_digits(digits: str, rng: random.Random) -> str:
    """A digit group as a caller reads it: word by word (with "oh" for zero, commas between), or as the
    digits themselves, which the synthesizers read one by one and the ASR hears best (RECIPES.md)."""
    if rng.random() < 0.4:
        return " ".join(digits)
    words = [("oh" if d == "0" and rng.random() < 0.5 else DIGIT_WORDS[int(d)]) for d in digits]
    return ", ".join(words) if rng.random() < 0.5 else " ".join(words)


def _phone(rng: random.Random) -> tuple[str, list[str]]:
    digits = f"{rng.choice(['617', '312', '415', '206', '503'])}555{rng.randrange(100, 200):04d}"
    groups = [digits[:3], digits[3:6], digits[6:]]
    spoken = [_spoken_digits(g, rng) for g in groups]
    cut = rng.choice([1, 2])  # the pause: after the area code or before the last four
    return digits, [" ".join(spoken[:cut]), " ".join(spoken[cut:])]


def _card(rng: random.Random) -> tuple[str, list[str]]:
    base = rng.choice(["4111111111111111", "5555555555554444", "4012888888881881", "5105105105105100"])
    groups = [base[i : i + 4] for i in range(0, 16, 4)]
    spoken = [_spoken_digits(g, rng) for g in groups]
    return base, [" ".join(spoken[:2]), " ".join(spoken[2:])]


def _email(rng: random.Random) -> tuple[str, list[str]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    domain_words = rng.choice(ORGS).split()
    tld = rng.choice(TLDS)
    local_spoken = rng.choice([f"{first} dot {last}", f"{first} {last}", f"{first[0]} {last}"])
    local = local_spoken.replace(" dot ", ".").replace(" ", "")
    domain = "-".join(domain_words) if rng.random() < 0.3 else "".join(domain_words)
    domain_spoken = " dash ".join(domain_words) if "-" in domain else " ".join(domain_words)
    value = f"{local}@{domain}.{tld}"
    if rng.random() < 0.5:
        return value, [f"{local_spoken}", f"at {domain_spoken} dot {tld}"]
    return value, [f"{local_spoken} at", f"{domain_spoken} dot {tld}"]


PROMPTS = {
    "phone": ("What is the best number to reach you?", ["Sure, it is", "My number is", "You can call me on"]),
    "card": ("Which card would you like to use for the copay?", ["The card number is", "It is a Visa,"]),
    "email": ("And what email should we send the reminder to?", ["Please write to", "It is", "Send it to"]),
}
SMALL_TALK = [
    (
        "Good afternoon, you have reached the clinic. How can I help?",
        "Hi, I am calling about my appointment.",
    ),
    ("Let me pull up your chart.", "Thank you, I can wait."),
    ("Your appointment is on Thursday at ten in the morning.", "That works for me."),
    ("Please bring your insurance card and a list of your medicines.", "Okay, I will do that."),
    ("Is there anything else I can help you with today?", "No, that is everything. Thank you."),
]


def make_call(i: int, rng: random.Random) -> Call:
    two_tracks = rng.random() < 0.7
    voices = [rng.choice(VOICES) + rng.choice(VARIANTS) for _ in range(2)]
    call = Call(
        name=f"unseen-{i:02d}",
        turns=[],
        voices=voices,
        wpm=[rng.randrange(125, 166, 5) for _ in range(2)],
        noise_db=rng.choice([None, None, -48.0, -42.0]),
        phone_band=rng.random() < 0.3,
    )
    patient = 1 if two_tracks else 0

    def say(track: int, text: str) -> None:
        call.turns.append(Turn(track, [text], text))

    say(0, SMALL_TALK[0][0])
    say(patient, SMALL_TALK[0][1])
    kinds = rng.sample(["phone", "card", "email"], k=rng.choice([1, 2]))
    for kind in kinds:
        question, leads = PROMPTS[kind]
        value, parts = {"phone": _phone, "card": _card, "email": _email}[kind](rng)
        lead = rng.choice(leads)
        say(0, question)
        placeholder = f"[{kind.upper()}]"
        if rng.random() < 0.8:  # the pause inside the entity
            call.turns.append(Turn(patient, [f"{lead} {parts[0]}", parts[1]], f"{lead} {placeholder}"))
        else:
            call.turns.append(Turn(patient, [f"{lead} {' '.join(parts)}"], f"{lead} {placeholder}"))
        call.items.append({"kind": kind, "value": value})
    for agent, reply in rng.sample(SMALL_TALK[1:], k=2):
        say(0, agent)
        say(patient, reply)
    return call


def _espeak(voice: str, wpm: int, text: str, tmp: Path) -> np.ndarray:
    raw, out = tmp / "raw.wav", tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "sox",
            "-V1",  # no clipping warnings: -G below guards against clipping
            "-G",
            "-R",
            "-D",
            str(raw),
            "-r",
            str(RATE),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out),
        ],
        check=True,
    )
    with wave.open(str(out), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


# Other synthesisers beside espeak-ng (Debian: festival, festvox-us-slt-hts, festvox-kallpc16k,
# festvox-kdlpc16k, flite), named "festival:<voice>" / "flite:<voice>" in `Call.voices`, so that a
# measurement stops rewarding one engine's voice. `make_call` still draws espeak-ng voices only (the
# seeded set stays as it was); benchmarks/models.py draws from MIXED_VOICES.
FESTIVAL_VOICES = ("festival:cmu_us_slt_arctic_hts", "festival:kal_diphone", "festival:ked_diphone")
FLITE_VOICES = ("flite:awb", "flite:rms", "flite:slt", "flite:kal16")
MIXED_VOICES = (*VOICES, *FESTIVAL_VOICES, *FLITE_VOICES)


def synth(voice: str, wpm: int, text: str, tmp: Path) -> np.ndarray:
    """`text` in `voice` at about `wpm` words a minute, as 48 kHz samples (espeak-ng unless prefixed)."""
    engine, _, name = voice.partition(":")
    if engine not in ("festival", "flite"):
        return _espeak(voice, wpm, text, tmp)
    raw, out = tmp / "other.wav", tmp / "other48.wav"
    if engine == "flite":
        cmd = ["flite", "-voice", name, "-t", text, "-o", str(raw)]
    else:
        (tmp / "text.txt").write_text(text)
        cmd = ["text2wave", "-eval", f"(voice_{name})", str(tmp / "text.txt"), "-o", str(raw)]
    subprocess.run(cmd, check=True, capture_output=True)
    # Speed by sox's tempo (pitch kept): the HTS voice ignores festival's Duration_Stretch. Both
    # synthesisers speak at roughly 165 wpm.
    sox = ["sox", "-V1", "-G", "-R", "-D", str(raw), "-r", str(RATE), "-c", "1", "-b", "16"]
    subprocess.run([*sox, "-e", "signed-integer", str(out), "tempo", "-s", f"{wpm / 165:.3f}"], check=True)
    with wave.open(str(out), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


def _band_limit(pcm: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft(pcm)
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    return np.fft.irfft(spec, len(pcm)).astype(np.float32)


def render(call: Call, out: Path, rng: random.Random, tmp: Path) -> None:
    """Write the call as a fixture directory (one FLAC per track, one timeline) with its fixture.json."""
    n_tracks = 1 + max(t.track for t in call.turns)
    pieces: list[tuple[int, float, np.ndarray]] = []
    t = 0.5
    for turn in call.turns:
        for j, part in enumerate(turn.parts):
            wpm = call.wpm[turn.track]
            if len(turn.parts) > 1 or "[" in turn.ideal:
                wpm = wpm * 5 // 6  # callers read numbers and addresses out slowly
            pcm = synth(call.voices[turn.track], wpm, part, tmp)
            pieces.append((turn.track, t, pcm))
            t += len(pcm) / RATE + (rng.uniform(*PAUSE_S) if j < len(turn.parts) - 1 else 0.0)
        t += rng.uniform(*GAP_S)
    total = int((t + 0.5) * RATE)
    noise_rng = np.random.default_rng(rng.randrange(2**32))
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n_tracks):
        track = np.zeros(total, dtype=np.float32)
        for tr, start, pcm in pieces:
            if tr == k:
                s = int(start * RATE)
                track[s : s + len(pcm)] += pcm
        if call.phone_band:
            track = _band_limit(track)
        if call.noise_db is not None:
            track += noise_rng.normal(0, 32768 * 10 ** (call.noise_db / 20), total).astype(np.float32)
        wav = tmp / f"{k}.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(np.clip(track, -32768, 32767).astype("<i2").tobytes())
        subprocess.run(["sox", "-V1", "-R", "-D", str(wav), str(out / f"{k}-track.flac")], check=True)
    spec = {"expected": {"phi": [it["value"] for it in call.items]}}
    (out / "fixture.json").write_text(json.dumps(spec))


def _digit_text(text: str) -> str:
    """The text's digits in order, spoken digits and tiny.en's words for them included."""
    out = []
    for tok in re.findall(r"[a-z]+|\d", text.lower()):
        if tok.isdigit():
            out.append(tok)
        elif tok in _AS_DIGIT:
            out.append(_AS_DIGIT[tok])
        elif tok in ("double", "triple"):
            out.append(tok)  # resolved below
        else:
            out.append(" ")
    joined: list[str] = []
    for i, tok in enumerate(out):
        if tok in ("double", "triple") and i + 1 < len(out) and out[i + 1].isdigit():
            joined.append(out[i + 1] * (1 if tok == "double" else 2))
        elif tok not in ("double", "triple"):
            joined.append(tok)
    return "".join(joined)


def leaked(item: dict[str, str], text: str) -> bool:
    """Whether the stored text (one call, time order) still gives this entity back."""
    value = item["value"]
    if item["kind"] in ("phone", "card"):
        window = 7 if item["kind"] == "phone" else 11
        digits = re.sub(r"\s+", "", _digit_text(text))  # separators and pauses between groups dropped
        return any(value[i : i + window] in digits for i in range(len(value) - window + 1))
    local, domain = value.split("@")
    flat = re.sub(r"[^a-z0-9]", "", text.lower().replace(" dot ", ".").replace(" dash ", "-"))
    local_flat = re.sub(r"[^a-z0-9]", "", local)
    domain_flat = re.sub(r"[^a-z0-9]", "", domain.rsplit(".", 1)[0])
    return local_flat in flat or domain_flat in flat


def _cli(args: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"converse-worker {args[0]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return proc.stdout


def run(n_calls: int, seed: int, model: str | None, keep: Path | None, prompt: str = "") -> dict[str, Any]:
    rng = random.Random(seed)
    calls = [make_call(i, rng) for i in range(n_calls)]
    work = Path(tempfile.mkdtemp(prefix="unseen-"))
    try:
        fixtures = work / "fixtures"
        t0 = time.perf_counter()
        for call in calls:
            tmp = work / "tmp"
            tmp.mkdir(exist_ok=True)
            render(call, fixtures / call.name, rng, tmp)
        made_s = time.perf_counter() - t0
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSE_")}
        env.update(CONVERSE_DATA_DIR=str(work / "data"), CONVERSE_KEK_FILE=str(work / "keys" / "kek.json"))
        if model:
            env["CONVERSE_MODEL"] = model
        if prompt:
            env["CONVERSE_ASR_PROMPT"] = prompt
        t0 = time.perf_counter()
        out = _cli(["replay", "--json", "--concurrency", "2", *(str(fixtures / c.name) for c in calls)], env)
        replay_s = time.perf_counter() - t0
        ids = {
            e["fixture"]: e["call_id"]
            for e in map(json.loads, out.splitlines())
            if e["event"] == "call_started"
        }
        rows: list[dict[str, Any]] = []
        errors = words = 0
        for call in calls:
            shown = [
                json.loads(x)
                for x in _cli(["transcripts", "show", ids[call.name], "--json"], env).splitlines()
            ]
            stored = " ".join(u["text"] for u in sorted(shown, key=lambda u: (u["start"], u["track"])))
            ideal = " ".join(t.ideal for t in call.turns)
            ref, hyp = normalize(ideal), normalize(stored)
            call_errors = edit_distance(ref, hyp)
            errors += call_errors
            words += len(ref)
            leaks = [it["kind"] for it in call.items if leaked(it, stored)]
            rows.append({
                "call": call.name, "tracks": 1 + max(t.track for t in call.turns), "voices": call.voices,
                "noise_db": call.noise_db, "phone_band": call.phone_band,
                "items": [it["kind"] for it in call.items], "leaked": leaks,
                "split_entities": sum(len(t.parts) > 1 for t in call.turns),
                "wer": round(call_errors / max(1, len(ref)), 3),
            })  # fmt: skip
            mark = "LEAK " + ",".join(leaks) if leaks else "ok"
            noise = "band" if call.phone_band else ""
            noise += f" {call.noise_db:.0f}dB" if call.noise_db is not None else ""
            print(f"{call.name} {rows[-1]['tracks']}tr {','.join(call.voices):36} {noise:10} "
                  f"WER {rows[-1]['wer']:5.1%} {mark}")  # fmt: skip
        if keep is not None:
            shutil.copytree(fixtures, keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_items = sum(len(r["items"]) for r in rows)
    n_leaked = sum(len(r["leaked"]) for r in rows)
    return {
        "benchmark": "unseen_calls",
        "seed": seed,
        "model": model or "default",
        "prompt": bool(prompt),
        "calls": len(rows),
        "items": n_items,
        "leaked_items": n_leaked,
        "calls_leaking": sum(bool(r["leaked"]) for r in rows),
        "split_entities": sum(r["split_entities"] for r in rows),
        "wer": round(errors / max(1, words), 4),
        "make_s": round(made_s, 1),
        "replay_s": round(replay_s, 1),
        "load_avg": os.getloadavg()[0],
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=28)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--model", default=None, help="speech model name (as `replay --model`)")
    ap.add_argument("--keep", type=Path, default=None, help="copy the generated fixtures here")
    ap.add_argument("--prompt", action="store_true", help="with benchmarks/models.py's domain prompt")
    args = ap.parse_args()
    prompt = ""
    if args.prompt:
        from models import PROMPT  # a sibling script

        prompt = PROMPT
    result = run(args.calls, args.seed, args.model, args.keep, prompt)
    print(f"{result['leaked_items']} of {result['items']} items leaked in {result['calls_leaking']} of "
          f"{result['calls']} calls; WER {result['wer']:.1%}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = (f"_{args.model}" if args.model else "") + ("_prompt" if args.prompt else "")
    suffix += f"_seed{args.seed}" if args.seed != SEED else ""
    (RESULTS / f"unseen_calls{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()

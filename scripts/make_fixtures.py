"""Generate the speech fixtures under fixtures/ with espeak-ng and sox (deterministic).

    .venv/bin/python scripts/make_fixtures.py [--out fixtures]

Outputs:
- fixtures/asr/NN.opus + manifest.json: short utterances with known text, several voices and speeds
  (Ogg Opus at 24 kb/s, 16 kHz mono, so 40+ of them stay a few hundred kB).
- fixtures/silence.wav, fixtures/noise.wav: 16 kHz mono s16, digital silence / seeded pink noise.
- fixtures/call_phi/{0-agent,1-patient}.flac + fixture.json: a two-track call on one timeline that speaks
  a phone number, an email address and a card number.
- fixtures/example_call.flac: ~8 s, two utterances, one track (the README's main job).

espeak-ng is deterministic for a given version; sox runs with -R (repeatable) and -D (no random
dither); noise uses a seeded numpy generator; Opus is encoded bit-exact with PyAV's libopus.
Re-running overwrites the files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ASR_RATE = 16_000

# (voice, words per minute, text). Short sentences of the kind a clinic call holds; numbers are kept out of
# the accuracy set (tiny.en hears espeak's digits poorly, RECIPES.md) except a few written as words.
ASR_UTTERANCES: list[tuple[str, int, str]] = [
    ("en-us", 150, "I would like to book an appointment for next week."),
    ("en-gb", 140, "Can you tell me when the pharmacy opens tomorrow?"),
    ("en-us+f3", 160, "My doctor asked me to call about my test results."),
    ("en+m3", 130, "The prescription needs to be renewed before Friday."),
    ("en-us", 170, "Please hold while I check the schedule."),
    ("en-gb", 150, "I have been feeling dizzy for the last few days."),
    ("en-us+f3", 140, "Is there a parking lot near the main entrance?"),
    ("en+m3", 160, "We can see you on Tuesday morning at the clinic."),
    ("en-us", 130, "Do you have any allergies to medication?"),
    ("en-gb", 170, "Thank you for calling the patient support line."),
    ("en-us+f3", 150, "I need to cancel my appointment on Monday."),
    ("en+m3", 140, "The nurse will call you back this afternoon."),
    ("en-us", 160, "How long should I wait after eating to take the pills?"),
    ("en-gb", 130, "Your insurance card has expired, please send a new one."),
    ("en-us+f3", 170, "I would prefer a female doctor if possible."),
    ("en+m3", 150, "The blood pressure reading was higher than normal."),
    ("en-us", 140, "Could you spell your last name for me?"),
    ("en-gb", 160, "Please bring a list of the medicines you take."),
    ("en-us+f3", 130, "The pharmacy said the order is not ready yet."),
    ("en+m3", 170, "I am calling about a bill I received last month."),
    ("en-us", 150, "Our office is closed on public holidays."),
    ("en-gb", 140, "My daughter has had a fever since yesterday."),
    ("en-us+f3", 160, "Can I change the appointment to a later time?"),
    ("en+m3", 130, "The doctor wants to see you again in two weeks."),
    ("en-us", 170, "Please arrive fifteen minutes before your visit."),
    ("en-gb", 150, "The results of your scan came back normal."),
    ("en-us+f3", 140, "I forgot to ask about the side effects."),
    ("en+m3", 160, "We will send a reminder the day before."),
    ("en-us", 130, "Is the clinic open on Saturday afternoon?"),
    ("en-gb", 170, "I would like to speak to someone in billing."),
    ("en-us+f3", 150, "My knee still hurts when I climb the stairs."),
    ("en+m3", 140, "You should drink plenty of water today."),
    ("en-us", 160, "The referral letter was sent to the hospital."),
    ("en-gb", 130, "Can you confirm my address for the records?"),
    ("en-us+f3", 170, "The waiting room is on the second floor."),
    ("en+m3", 150, "I need a refill of my blood pressure medicine."),
    ("en-us", 140, "The specialist can see you next Thursday."),
    ("en-gb", 160, "Please do not eat anything after midnight."),
    ("en-us+f3", 130, "I have a question about my vaccination record."),
    ("en+m3", 170, "The lab will need a new sample from you."),
    ("en-us", 150, "Please remember to bring your photo identification."),
    ("en-gb", 140, "The therapist recommended some gentle exercises."),
    ("en-us+f3", 160, "We have an opening at ten in the morning."),
    ("en+m3", 130, "Your test results will be ready on Wednesday."),
]

# A two-track call: (track, voice, wpm, text). Tracks alternate on one timeline.
CALL_PHI_TURNS: list[tuple[int, str, int, str]] = [
    (0, "en-us", 150, "Good morning, this is the clinic. How can I help you today?"),
    (1, "en-gb", 140, "Hi, I need to move my appointment to Tuesday."),
    (0, "en-us", 140, "Sure. What is the best phone number to reach you?"),
    (1, "en-gb", 130, "It is 555-123-4567."),
    (0, "en-us", 150, "And your email address for the reminder?"),
    (1, "en-gb", 120, "jane dot doe at example dot com."),
    (0, "en-us", 150, "There is a copay for the pharmacy. Which card will you use?"),
    (1, "en-gb", 140, "My card number is 4111 1111 1111 1111."),
    (0, "en-us", 150, "Thank you. Your appointment is confirmed for Tuesday."),
]
CALL_PHI_GAP = 0.6  # seconds of silence between turns

EXAMPLE_CALL: list[tuple[str, int, str]] = [
    ("en-us", 150, "Hello, I would like to book an appointment for next week."),
    ("en-us", 150, "Tuesday morning would be best for me."),
]


def espeak(voice: str, wpm: int, text: str, rate: int, tmp: Path) -> np.ndarray:
    """Speak `text` and return mono int16 samples at `rate` (sox does the resampling)."""
    raw = tmp / "raw.wav"
    out = tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "sox",
            "-R",
            "-D",
            str(raw),
            "-r",
            str(rate),
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
    return read_wav(out)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def write_flac(path: Path, pcm: np.ndarray, rate: int, tmp: Path) -> None:
    src = tmp / "flac_src.wav"
    write_wav(src, pcm, rate)
    subprocess.run(["sox", "-R", str(src), "-C", "8", str(path)], check=True)


def write_opus(path: Path, pcm: np.ndarray, rate: int, bitrate: int = 24_000) -> None:
    """Ogg Opus via PyAV's libopus (sox here cannot write Opus)."""
    # bitexact: a fixed Ogg serial number (else random per run) and no encoder version tag.
    with av.open(str(path), "w", format="ogg", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def pink_noise(seconds: float, rate: int, rms_dbfs: float, seed: int) -> np.ndarray:
    """Seeded pink (1/f) noise at a given RMS level, by shaping white noise in the frequency domain."""
    n = round(seconds * rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    freqs[0] = freqs[1]
    shaped = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    shaped *= (10 ** (rms_dbfs / 20) * 32767) / np.sqrt(np.mean(shaped**2))
    return np.clip(np.round(shaped), -32768, 32767).astype(np.int16)


def make_asr(out: Path, tmp: Path) -> None:
    asr = out / "asr"
    asr.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, (voice, wpm, text) in enumerate(ASR_UTTERANCES):
        pcm = np.concatenate(
            [silence(0.3, ASR_RATE), espeak(voice, wpm, text, ASR_RATE, tmp), silence(0.3, ASR_RATE)]
        )
        name = f"{i:02d}.opus"
        write_opus(asr / name, pcm, ASR_RATE)
        manifest.append({"file": name, "text": text, "voice": voice, "wpm": wpm})
    (asr / "manifest.json").write_text(json.dumps({"utterances": manifest}, indent=1) + "\n")


def make_call_phi(out: Path, tmp: Path) -> None:
    rate = ASR_RATE  # 16 kHz keeps the FLAC small; readers resample to 48 kHz like any other fixture
    d = out / "call_phi"
    d.mkdir(parents=True, exist_ok=True)
    tracks: list[list[np.ndarray]] = [[silence(0.5, rate)], [silence(0.5, rate)]]
    for track, voice, wpm, text in CALL_PHI_TURNS:
        speech = espeak(voice, wpm, text, rate, tmp)
        other = 1 - track
        tracks[track].append(speech)
        tracks[other].append(silence(len(speech) / rate, rate))
        for t in tracks:
            t.append(silence(CALL_PHI_GAP, rate))
    for track, name in enumerate(["0-agent.flac", "1-patient.flac"]):
        write_flac(d / name, np.concatenate(tracks[track]), rate, tmp)
    fixture = {
        "variables": {"patient_first_name": "Jane", "patient_last_name": "Doe"},
        "expected": {
            "content_words": ["appointment", "Tuesday", "pharmacy", "email", "card"],
            "phi": ["5551234567", "jane.doe@example.com", "4111111111111111", "555-123-4567"],
        },
    }
    (d / "fixture.json").write_text(json.dumps(fixture, indent=1) + "\n")


def make_example(out: Path, tmp: Path) -> None:
    parts = [silence(0.5, ASR_RATE)]
    for voice, wpm, text in EXAMPLE_CALL:
        parts += [espeak(voice, wpm, text, ASR_RATE, tmp), silence(1.0, ASR_RATE)]
    write_flac(out / "example_call.flac", np.concatenate(parts), ASR_RATE, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "fixtures")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        make_asr(out, tmp)
        make_call_phi(out, tmp)
        make_example(out, tmp)
    write_wav(out / "silence.wav", silence(3.0, ASR_RATE), ASR_RATE)
    write_wav(out / "noise.wav", pink_noise(3.0, ASR_RATE, rms_dbfs=-30.0, seed=1234), ASR_RATE)


if __name__ == "__main__":
    main()

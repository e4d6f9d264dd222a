"""Speech models compared on generated calls: WER, numbers kept right, PHI caught, CPU, time to final.

    .venv/bin/python benchmarks/models.py [--quick] [--calls 12] [--ttf-calls 2] [--seed S] [--out DIR]

Calls are made fresh from a seed as benchmarks/unseen_calls.py makes them (phones, cards and emails read
the ways callers read them, most cut by a pause), with voices drawn from espeak-ng, festival and flite
(unseen_calls.MIXED_VOICES) at 120-180 wpm, line noise and telephone band-limiting, plus two turns of
numbers per call: a dosage ("fifty milligrams of metformin"), an appointment time and date, a copay in
dollars, a room number.

For each installed model (media.models: tiny.en, base when its extra is installed) x beam 1 / 5 x no
prompt / the domain PROMPT, through the CLI as QA runs it (`converse-worker replay --json`, one ASR thread):
- WER of each call's redacted transcript (utterances in time order across tracks) against the ideal
  redacted text, lower-cased, punctuation dropped, number words and digits read alike ("fifty" = "50");
- number accuracy: the share of number items whose value is in the transcript where it was said
  (50 milligrams, 2 30 / 230, march 14, 45 dollars, room 312 / 3 12);
- PHI caught: the share of phone/card/email items the stored text does NOT give back (unseen_calls.leaked);
  every model's own output is checked, and the run fails when any item leaks;
- CPU per utterance: the replay child's user+system CPU (getrusage of children) minus the same child's
  start-up (a replay of one second of silence with the same settings), over the finals it stored;
  calls per core = seconds of call audio / CPU seconds of the replay;
- time to final p50/p95: the first `--ttf-calls` calls replayed again with `--realtime` (all at once,
  ASR threads = cores), each final timed as its line arrives minus the moment its end was played
  (call_started + end).

Prints one line per configuration; the LAST line is one JSON object. Writes models.json and models.png
(WER against CPU per utterance) under benchmarks/results/; `--quick` (one short call, three
configurations, the first one timed at real time) writes models_quick.*.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, loadavg, machine, percentiles, pyplot, write_json
from unseen_calls import MIXED_VOICES, Call, Turn, leaked, make_call, render

from media.models import NAMES, ModelError, resolve
from media.wer import edit_distance

SEED = 2217  # never used for tuning
CALLS, TTF_CALLS = 10, 2  # ~11 minutes on 2 cores for 8 configurations
BEAMS = (1, 5)
# Domain words as previous text: no patient data, only the vocabulary the calls use.
PROMPT = (
    "Clinic call about appointments, dates and times, room numbers, copays in dollars, and medication "
    "doses in milligrams: metformin, lisinopril, atorvastatin, amoxicillin, sertraline, ibuprofen."
)
MEDS = ("metformin", "lisinopril", "atorvastatin", "amoxicillin", "sertraline", "ibuprofen")
MONTHS = "january february march april may june july august september october november december".split()

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen \
sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORD = "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth \
thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split()
_ORD_TENS = {"twentieth": 20, "thirtieth": 30}
WORD_VALUE = {
    **{w: i for i, w in enumerate(_UNITS)},
    **{w: i for i, w in enumerate(_ORD)},
    **{w: 20 + 10 * i for i, w in enumerate(_TENS)},
    **_ORD_TENS,
}
_ALIASES = {"mg": "milligrams", "milligram": "milligrams", "dollar": "dollars", "bucks": "dollars"}


def spoken(n: int) -> str:
    """0..999 in words ("three hundred twelve")."""
    if n < 20:
        return _UNITS[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _UNITS[n % 10])
    rest = n % 100
    return _UNITS[n // 100] + " hundred" + ("" if rest == 0 else " " + spoken(rest))


def _ordinal(n: int) -> str:
    if n < 20:
        return _ORD[n]
    if n % 10 == 0:
        return {20: "twentieth", 30: "thirtieth"}[n]
    return _TENS[n // 10 - 2] + " " + _ORD[n % 10]


def canon(text: str) -> list[str]:
    """Words of `text`, lower-cased, punctuation dropped, number words and digits as numbers: "Fifty mg",
    "50 milligrams" and "$50" give ["50", "milligrams"] / ["dollars", "50"]; "2:30" gives ["2", "30"]."""
    text = text.lower().replace("$", " dollars ").replace("o'clock", "oclock")
    toks = re.findall(r"\d+|[a-z]+", text)
    out: list[str] = []
    cur: int | None = None
    last = ""  # kind of the last number word: unit / tens / hundred
    for raw in toks:
        tok = _ALIASES.get(raw, raw)
        if tok in ("st", "nd", "rd", "th") and out and out[-1].isdigit() and cur is None:
            continue  # "14th"
        value = WORD_VALUE.get(tok)
        if tok == "hundred" and cur is not None and last == "unit":
            cur, last = cur * 100, "hundred"
            continue
        if tok == "and" and last == "hundred":
            continue
        if value is not None:
            if cur is not None and ((last == "tens" and value < 10) or (last == "hundred" and value < 100)):
                cur += value
                last = "tens" if value >= 20 else "unit"
                continue
            if cur is not None:
                out.append(str(cur))
            cur, last = value, ("tens" if value >= 20 else "unit")
            continue
        if cur is not None:
            out.append(str(cur))
            cur, last = None, ""
        out.append(str(int(tok)) if tok.isdigit() else tok)
    if cur is not None:
        out.append(str(cur))
    return out


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


@dataclass
class NumberItem:
    kind: str
    forms: list[list[str]]  # any of these token runs in the transcript means it was kept right


def _number_turns(rng: random.Random) -> tuple[list[tuple[str, str]], list[NumberItem]]:
    """Two (agent, patient) exchanges with numbers: spoken text and the items to find in the transcript."""
    dose = rng.choice([5, 10, 20, 25, 40, 50, 75, 100, 250, 500])
    med = rng.choice(MEDS)
    hour, minute = rng.randrange(1, 12), rng.choice([10, 15, 20, 30, 40, 45, 50])
    month, day = rng.choice(MONTHS), rng.randrange(2, 29)
    copay = rng.choice([15, 20, 25, 30, 35, 40, 45, 50, 60, 75])
    room = rng.randrange(1, 5) * 100 + rng.randrange(10, 40)
    half = "in the morning" if hour >= 7 else "in the afternoon"
    turns = [
        (
            f"Your doctor wants you to take {spoken(dose)} milligrams of {med} twice a day.",
            f"Okay, {spoken(dose)} milligrams twice a day.",
        ),
        (
            f"Your follow up is on {month} {_ordinal(day)} at {spoken(hour)} {spoken(minute)} {half}, "
            f"in room {spoken(room // 100)} {spoken(room % 100)}.",
            f"Got it. And the copay is still {spoken(copay)} dollars?",
        ),
    ]
    d = str(dose)
    items = [
        NumberItem("dosage", [[d, "milligrams"]]),
        NumberItem("time", [[str(hour), str(minute)], [f"{hour}{minute:02d}"]]),  # "2:30", "230"
        NumberItem("date", [[month, str(day)]]),
        NumberItem("amount", [[str(copay), "dollars"], ["dollars", str(copay)]]),
        NumberItem(
            "room",
            [["room", str(room)], ["room", str(room // 100), str(room % 100)], ["room", *str(room)]],
        ),
    ]
    return turns, items


@dataclass
class ModelCall:
    call: Call
    numbers: list[NumberItem]
    seconds: float = 0.0


def make_calls(n: int, seed: int, short: bool = False) -> list[ModelCall]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        call = make_call(i, rng)
        call.name = f"models-{i:02d}"
        call.voices = [rng.choice(MIXED_VOICES) for _ in range(2)]
        call.wpm = [rng.randrange(120, 181, 10) for _ in range(2)]
        patient = max(t.track for t in call.turns)
        exchanges, numbers = _number_turns(rng)
        extra = [
            Turn(tr, [text], text)
            for agent, reply in exchanges
            for tr, text in ((0, agent), (patient, reply))
        ]
        if short:  # --quick: greeting, the dosage exchange and the first entity only
            call.turns = call.turns[:1] + extra[:2] + call.turns[2:4]
            call.items = call.items[:1]
            numbers = numbers[:1]
        else:
            call.turns = call.turns[:2] + extra + call.turns[2:]
        out.append(ModelCall(call, numbers))
    return out


def _flac_seconds(directory: Path) -> float:
    info = subprocess.run(
        ["soxi", "-D", str(next(directory.glob("*.flac")))], capture_output=True, text=True, check=True
    )
    return float(info.stdout)


def _silence(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    wav = path / "0-track.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(b"\0\0" * 48_000)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass(frozen=True)
class Config:
    model: str
    beam: int
    prompt: bool

    @property
    def label(self) -> str:
        return f"{self.model} beam {self.beam}{' +prompt' if self.prompt else ''}"


def _env(cfg: Config, work: Path, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSE_")}
    env.update(
        CONVERSE_DATA_DIR=str(work / "data"),
        CONVERSE_KEK_FILE=str(work / "keys" / "kek.json"),
        CONVERSE_MODEL=cfg.model,
        CONVERSE_ASR_BEAM=str(cfg.beam),
        CONVERSE_ASR_PROMPT=PROMPT if cfg.prompt else "",
        CONVERSE_ASR_THREADS=str(threads),
        CONVERSE_LOG_LEVEL="warning",
    )
    return env


def _replay(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    cpu0 = _child_cpu()
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "replay", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {proc.stderr[-800:]}")
    return proc.stdout, _child_cpu() - cpu0


def _timed_realtime(fixtures: list[Path], env: dict[str, str]) -> list[float]:
    """Replay at real time, all at once; each final's arrival minus the moment its end was played."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "replay", "--json", "--realtime", "--concurrency",
         str(len(fixtures)), *map(str, fixtures)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    started: dict[str, float] = {}
    ttf: list[float] = []
    for line in proc.stdout:
        now = time.monotonic()
        e = json.loads(line)
        if e.get("event") == "call_started":
            started[e["call_id"]] = now
        elif "text" in e and e["call_id"] in started:
            ttf.append(now - (started[e["call_id"]] + float(e["end"])))
    if proc.wait(timeout=60) != 0:
        raise SystemExit("realtime replay failed")
    return ttf


def _stored_check(out: str, env: dict[str, str]) -> None:
    """The finals replay printed are what `transcripts show` reads back from storage (one call checked)."""
    events = [json.loads(x) for x in out.splitlines()]
    call_id = next(e["call_id"] for e in events if e.get("event") == "call_started")
    printed = sorted(
        (e["track"], e["start"], e["text"]) for e in events if e.get("call_id") == call_id and "text" in e
    )
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "transcripts", "show", call_id, "--json"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    stored = sorted((u["track"], u["start"], u["text"]) for u in map(json.loads, proc.stdout.splitlines()))
    if [t for *_, t in stored] != [t for *_, t in printed]:
        raise SystemExit("replay output and stored transcript differ")


def run_config(
    cfg: Config, calls: list[ModelCall], fixtures: Path, work: Path, ttf_calls: int, startup_cpu: float
) -> dict[str, Any]:
    env = _env(cfg, work / cfg.label.replace(" ", "_"), threads=1)
    out, cpu = _replay([str(fixtures / mc.call.name) for mc in calls], env)
    _stored_check(out, env)
    events = [json.loads(x) for x in out.splitlines()]
    by_fixture: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if "text" in e:
            by_fixture.setdefault(e["fixture"], []).append(e)
    errors = words = kept = n_numbers = leaks = n_items = 0
    per_kind: dict[str, list[int]] = {}
    leaked_items: list[str] = []
    for mc in calls:
        finals = sorted(by_fixture.get(mc.call.name, []), key=lambda u: (u["start"], u["track"]))
        stored = " ".join(u["text"] for u in finals)
        hyp = canon(stored)
        ideal = " ".join(t.ideal for t in mc.call.turns)
        ref = canon(ideal)
        errors += edit_distance(ref, hyp)
        words += len(ref)
        for item in mc.numbers:
            ok = any(_contains(hyp, form) for form in item.forms)
            kept += ok
            n_numbers += 1
            per_kind.setdefault(item.kind, [0, 0])
            per_kind[item.kind][0] += ok
            per_kind[item.kind][1] += 1
        for it in mc.call.items:
            n_items += 1
            if leaked(it, stored):
                leaks += 1
                leaked_items.append(f"{mc.call.name}:{it['kind']}")
    finals_n = sum(len(v) for v in by_fixture.values())
    model_cpu = max(0.0, cpu - startup_cpu)
    audio_s = sum(mc.seconds for mc in calls)
    rt_env = _env(cfg, work / "rt", threads=os.cpu_count() or 1)
    ttf = _timed_realtime([fixtures / mc.call.name for mc in calls[:ttf_calls]], rt_env) if ttf_calls else []
    stats = percentiles(ttf)
    return {
        "model": cfg.model,
        "beam": cfg.beam,
        "prompt": cfg.prompt,
        "label": cfg.label,
        "wer": round(errors / max(1, words), 4),
        "number_accuracy": round(kept / max(1, n_numbers), 4),
        "numbers": {k: f"{a}/{b}" for k, (a, b) in sorted(per_kind.items())},
        "phi_items": n_items,
        "phi_leaked": leaks,
        "phi_caught": round(1 - leaks / max(1, n_items), 4),
        "leaked_items": leaked_items,
        "finals": finals_n,
        "cpu_s": round(cpu, 2),
        "startup_cpu_s": round(startup_cpu, 2),
        "cpu_per_utterance_s": round(model_cpu / max(1, finals_n), 4),
        "calls_per_core": round(audio_s / max(1e-9, model_cpu), 1),
        "ttf": stats,
        "ttf_p50_s": stats["p50"],
        "ttf_p95_s": stats["p95"],
        "loadavg": loadavg(),
    }


def installed_models() -> tuple[list[str], dict[str, str]]:
    found, missing = [], {}
    for name in NAMES:
        try:
            resolve(name, None)  # joins a split model into the cache once, outside the timed replays
        except ModelError as exc:
            missing[name] = str(exc)
            continue
        found.append(name)
    return found, missing


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        marker = "o" if r["beam"] == 1 else "s"
        color = "tab:blue" if r["model"] == "tiny.en" else "tab:orange"
        ax.scatter(r["cpu_per_utterance_s"] * 1000, r["wer"] * 100, marker=marker, color=color,
                   facecolors="none" if r["prompt"] else color, s=60)  # fmt: skip
        ax.annotate(r["label"], (r["cpu_per_utterance_s"] * 1000, r["wer"] * 100), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("CPU per utterance (ms, one thread, whole pipeline)")
    ax.set_ylabel("WER (%)")
    ax.set_title("Speech models on generated calls (hollow: domain prompt; square: beam 5)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short call, three configurations")
    ap.add_argument("--calls", type=int, default=CALLS)
    ap.add_argument("--ttf-calls", type=int, default=TTF_CALLS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t_start = time.perf_counter()
    models, missing = installed_models()
    if args.quick:
        args.calls, args.ttf_calls = 1, 1
        configs = [Config("tiny.en", 1, False), Config("tiny.en", 5, True)]
        configs += [Config("base", 1, False)] if "base" in models else []
    else:
        configs = [Config(m, b, p) for m in models for b in BEAMS for p in (False, True)]
    calls = make_calls(args.calls, args.seed, short=args.quick)
    work = Path(tempfile.mkdtemp(prefix="models-"))
    rows: list[dict[str, Any]] = []
    try:
        fixtures = work / "fixtures"
        rng = random.Random(args.seed + 1)
        for mc in calls:
            tmp = work / "tmp"
            tmp.mkdir(exist_ok=True)
            render(mc.call, fixtures / mc.call.name, rng, tmp)
            mc.seconds = _flac_seconds(fixtures / mc.call.name)
        make_s = time.perf_counter() - t_start
        startup: dict[tuple[str, int, bool], float] = {}
        _silence(work / "silence")
        for i, cfg in enumerate(configs):
            key = (cfg.model, cfg.beam, cfg.prompt)
            if key not in startup:
                _out, startup[key] = _replay([str(work / "silence")], _env(cfg, work / "startup", 1))
            ttf_calls = args.ttf_calls if not args.quick or i == 0 else 0  # --quick: one real-time replay
            row = run_config(cfg, calls, fixtures, work, ttf_calls, startup[key])
            rows.append(row)
            print(
                f"{cfg.label:24} WER {row['wer']:6.1%}  numbers {row['number_accuracy']:6.1%}  "
                f"PHI leaked {row['phi_leaked']}/{row['phi_items']}  "
                f"CPU/utt {row['cpu_per_utterance_s']:.3f} s  "
                f"ttf p50 {row['ttf_p50_s']} p95 {row['ttf_p95_s']}  calls/core {row['calls_per_core']}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    name = "models_quick" if args.quick else "models"
    result = {
        "benchmark": "models",
        "quick": args.quick,
        "seed": args.seed,
        "calls": len(calls),
        "ttf_calls": args.ttf_calls,
        "audio_s": round(sum(mc.seconds for mc in calls), 1),
        "voices": sorted({v for mc in calls for v in mc.call.voices}),
        "models": models,
        "missing_models": missing,
        "prompt": PROMPT,
        "make_s": round(make_s, 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": machine(),
        "configs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / f"{name}.png")
    write_json(args.out, name, result)
    leaks = sum(r["phi_leaked"] for r in rows)
    print(json.dumps({k: v for k, v in result.items() if k not in ("configs", "machine")} | {
        "table": [{k: r[k] for k in ("label", "wer", "number_accuracy", "phi_leaked", "cpu_per_utterance_s",
                                      "ttf_p50_s", "ttf_p95_s", "calls_per_core")} for r in rows],
        "phi_leaked": leaks,
    }))  # fmt: skip
    if leaks:
        sys.exit(f"{leaks} PHI items leaked")


if __name__ == "__main__":
    main()

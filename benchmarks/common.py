"""Shared parts of the speech benchmarks (latency.py, capacity.py).

- the bench fixtures (fixtures/bench, made by scripts/make_bench_fixtures.py) with their ground truth;
- an Engine wired as `converse-worker replay` wires it (worker.calls.asr_setup.build_asr: one model, a worker
  pool sized to the cores), with in-memory stores and the real redactor;
- `replay_calls`: N real-time replays pushing Opus packets into the Engine as `worker.calls.replay.replay_one`
  does (packets encoded once beforehand by default, see `push_call`), each final matched to the utterance
  whose spoken end it carries, timed against the ground-truth end of speech;
- process CPU seconds read from /proc/self/stat (every thread of the process, CTranslate2's included),
  the machine description, percentiles, and JSON/PNG writing.

Time to final (the issue's definition): the moment the redacted transcript is committed minus the end of
speech in the audio. A replay pushes frame i at t0 + i * 20 ms; the end of speech is the push time of the
frame holding the ground-truth end (the same convention as the engine's own `time_to_final`, which uses
the VAD's end of voice instead). The final's commit is stamped when `on_final` fires, right after the
store accepted it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from media.fixtures import Fixture, TrackSource, load_fixture  # noqa: E402
from media.frames import FRAME_SECONDS, SAMPLE_RATE  # noqa: E402
from media.wer import corpus_wer  # noqa: E402

BENCH = ROOT / "fixtures" / "bench"
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("short", "padded")

# Per-call info lines would interleave with the figures: warnings and errors only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# -- machine and CPU ----------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads (/proc/self/stat fields 14 and 15)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):  # not Linux: the same figure from os.times()
        t = os.times()
        return t.user + t.system


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for name in ("ctranslate2", "faster_whisper", "numpy"):
        with contextlib.suppress(ImportError):
            versions[name] = str(__import__(name).__version__)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max (linear interpolation, as numpy's default) and the count."""
    xs = sorted(values)
    out: dict[str, float | int | None] = {"n": len(xs)}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        if not xs:
            out[name] = None
            continue
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[name] = round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 4)
    return out


def write_json(out: Path, name: str, obj: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(obj, indent=1) + "\n")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise ValueError("no JSON line in output")


# -- fixtures ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spoken:
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class BenchCall:
    fixture: Fixture
    truth: tuple[Spoken, ...]


def load_bench(count: int | None = None, seconds: float | None = None) -> list[BenchCall]:
    """The bench calls, optionally the first `count`, each optionally cut to about `seconds`: the cut
    falls in the middle of the first pause after that point's last whole utterance."""
    manifest = json.loads((BENCH / "manifest.json").read_text())
    calls = []
    for item in manifest["calls"][:count]:
        fixture = load_fixture(BENCH / item["file"])
        truth = tuple(Spoken(u["start"], u["end"], u["text"]) for u in item["utterances"])
        if seconds is not None and truth[-1].end > seconds:
            keep = [u for u in truth if u.end <= seconds] or [truth[0]]
            after = truth[len(keep)].start if len(keep) < len(truth) else keep[-1].end + 1.0
            cut = round((keep[-1].end + after) / 2 * SAMPLE_RATE)
            pcm = fixture.tracks[0].pcm[:cut]
            fixture = Fixture(fixture.name, (TrackSource(fixture.tracks[0].name, pcm),))
            truth = tuple(keep)
        calls.append(BenchCall(fixture, truth))
    return calls


# -- engine -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_engine(mode: str, threads: int | None = None) -> AsyncIterator[Any]:
    """An Engine as `replay` builds it (build_asr: one shared model), memory stores, the real redactor."""
    from storage.keys import LocalKeyFile
    from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
    from worker.calls.asr_setup import build_asr
    from worker.calls.engine import Engine
    from worker.metrics import Metrics

    args = argparse.Namespace(asr_threads=threads, asr_mode=mode, model_path=None)
    with tempfile.TemporaryDirectory() as tmp:
        async with build_asr(args) as scheduler:
            yield Engine(
                transcripts=MemoryTranscriptStore(),
                recordings=MemoryRecordingStore(),
                keys=LocalKeyFile(Path(tmp) / "kek.json"),
                asr=scheduler,
                metrics=Metrics(),
            )


async def warm_up(engine: Any) -> None:
    """One transcription so model loading and first-call costs stay out of the figures."""
    call = load_bench(1, seconds=6.0)[0]
    pcm = call.fixture.tracks[0].pcm[::3].tobytes()  # 48 -> 16 kHz by decimation is good enough here
    await engine.asr.submit_final("warm-up", pcm)


# -- replay and matching -------------------------------------------------------------------------------


@dataclass(slots=True)
class CallRecord:
    bench: BenchCall
    started: float = 0.0  # monotonic push time of frame 0
    finals: list[dict[str, Any]] = field(default_factory=list)  # with "mono": commit time
    lost: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class UttResult:
    fixture: str
    end: float  # ground-truth end of speech (s of audio)
    ttf: float | None  # None: no final covers this utterance's end
    ttf_engine: float | None  # the engine's own figure (from the VAD's end of voice)


_ENCODED: dict[str, list[bytes]] = {}


def encoded(fixture: Fixture) -> list[bytes]:
    """The fixture's one track as 20 ms Opus packets, encoded once and reused by every replay of it."""
    from media.fixtures import iter_frames
    from media.opus import OpusEncoder

    key = f"{fixture.name}/{len(fixture.tracks[0].pcm)}"
    if key not in _ENCODED:
        encoder = OpusEncoder()
        _ENCODED[key] = [encoder.encode(f) for f in iter_frames(fixture.tracks[0].pcm)]
    return _ENCODED[key]


async def push_call(engine: Any, rec: CallRecord) -> None:
    """`worker.calls.replay.replay_one` with the Opus packets encoded beforehand: the pod's side of a
    call only.

    replay_one encodes as it goes (~18 ms of CPU per call-second here, a third of a call's pipeline
    cost), which is the sender's work, not the pod's; everything after the packet is the same path."""
    from media.frames import FRAME_SAMPLES, EncodedFrame

    def on_final(r: Any) -> None:
        rec.finals.append(
            {"start": r.start, "end": r.end, "text": r.text, "time_to_final": r.time_to_final,
             "held": r.held, "mono": time.monotonic()}
        )  # fmt: skip

    fixture = rec.bench.fixture
    payloads = await asyncio.to_thread(encoded, fixture)
    call = await engine.start_call(source="replay", fixture=fixture.name, on_final=on_final)
    try:
        track = await call.open_track()
        t0 = rec.started = time.monotonic()
        for i, payload in enumerate(payloads):
            delay = t0 + i * FRAME_SECONDS - time.monotonic()  # paced by frame time: no drift
            if delay > 0:
                await asyncio.sleep(delay)
            await track.push(EncodedFrame(payload=payload, timestamp=i * FRAME_SAMPLES))
    except BaseException:
        await asyncio.shield(call.finish("failed", "replay interrupted"))
        raise
    summary = await call.finish("ended", "fixture complete")
    rec.lost, rec.failed = summary.frames_lost, summary.failed_utterances


async def replay_one_call(engine: Any, rec: CallRecord) -> None:
    """The same through `worker.calls.replay.replay_one` itself (it Opus-encodes in the process as it
    goes)."""
    from worker.calls.replay import replay_one

    def emit(obj: dict[str, Any]) -> None:
        now = time.monotonic()
        if obj["event"] == "call_started":
            rec.started = now  # replay_one takes t0 right after this line
        elif obj["event"] == "final":
            rec.finals.append({**obj, "mono": now})

    summary = await replay_one(engine, rec.bench.fixture, realtime=True, emit=emit)
    rec.lost, rec.failed = summary.frames_lost, summary.failed_utterances


async def replay_calls(
    engine: Any, calls: Sequence[BenchCall], offsets: Sequence[float], *, encode_live: bool = False
) -> list[CallRecord]:
    """Replay the calls at once in real time, call i starting `offsets[i]` seconds after the first.
    `encode_live`: through replay_one, paying the Opus encoding in this process as `replay` does."""
    records = [CallRecord(c) for c in calls]
    for c in calls:  # outside the timed part
        if not encode_live:
            await asyncio.to_thread(encoded, c.fixture)

    async def one(rec: CallRecord, delay: float) -> None:
        await asyncio.sleep(delay)
        await (replay_one_call if encode_live else push_call)(engine, rec)

    async with asyncio.TaskGroup() as tg:
        for rec, delay in zip(records, offsets, strict=True):
            tg.create_task(one(rec, delay))
    return records


def match(rec: CallRecord) -> tuple[list[UttResult], int]:
    """Each spoken utterance against the final whose span holds its end; and the count of finals that
    hold no speech at all (text made up in a silent stretch)."""
    out = []
    for u in rec.bench.truth:
        hit = next((f for f in rec.finals if f["start"] - 0.05 <= u.end <= f["end"] + 0.05), None)
        if hit is None:
            out.append(UttResult(rec.bench.fixture.name, u.end, None, None))
            continue
        end_push = rec.started + math.floor(u.end / FRAME_SECONDS) * FRAME_SECONDS
        out.append(UttResult(rec.bench.fixture.name, u.end, hit["mono"] - end_push, hit["time_to_final"]))
    spurious = sum(
        1 for f in rec.finals if not any(u.start < f["end"] and u.end > f["start"] for u in rec.bench.truth)
    )
    return out, spurious


def wer_by_call(records: Sequence[CallRecord]) -> dict[str, list[int]]:
    """Per call: [word errors, reference words] of its finals, joined, against its spoken text."""
    from media.wer import edit_distance, normalize

    out = {}
    for r in records:
        ref = normalize(" ".join(u.text for u in r.bench.truth))
        hyp = normalize(" ".join(f["text"] for f in r.finals))
        out[r.bench.fixture.name] = [edit_distance(ref, hyp), len(ref)]
    return out


def wer(records: Sequence[CallRecord]) -> float:
    """Corpus WER of each call's finals, joined, against its spoken text, joined (segmentation-proof)."""
    pairs = [
        (" ".join(u.text for u in r.bench.truth), " ".join(f["text"] for f in r.finals)) for r in records
    ]
    return round(corpus_wer(pairs), 4)

"""The engine's hold stage (redact.hold wired into worker.calls.engine) with a scripted per-track ASR: a final
that ends inside an entity is stored redacted jointly with the next one, at the bound or the call's end
it is stored over-redacted, the replay output matches what is stored, and a held final never holds up
the other track."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from media.events import Transcript
from media.fixtures import load_fixture
from storage.keys import LocalKeyFile
from storage.memory import MemoryRecordingStore, MemoryTranscriptStore
from storage.protocols import UtteranceRecord
from tests.support import FIXTURES
from tests.test_hold import leaks
from worker.calls.engine import Engine, EngineConfig, RedactFn
from worker.calls.replay import replay_one


class ScriptedAsr:
    """An `AsrLike` that answers each track's finals from its own script (the key names the track);
    `gate[track][i]`, when set, is awaited before that track's i-th final is answered."""

    def __init__(
        self, scripts: dict[int, list[str]], gates: dict[tuple[int, int], asyncio.Event] | None = None
    ):
        self.scripts = scripts
        self.gates = gates or {}
        self.seen: dict[int, int] = {}

    async def submit_final(self, call_key: str, pcm: bytes) -> Transcript:
        track = int(call_key.rsplit("/", 1)[1])
        i = self.seen.get(track, 0)
        self.seen[track] = i + 1
        gate = self.gates.get((track, i))
        if gate is not None:
            await gate.wait()
        script = self.scripts.get(track, [])
        return Transcript(text=script[i] if i < len(script) else "Okay.")

    def submit_partial(self, call_key: str, pcm: bytes) -> asyncio.Future[Transcript | None] | None:
        return None


def engine(tmp_path: Path, asr: ScriptedAsr, hold_s: float = 2.0) -> tuple[Engine, MemoryTranscriptStore]:
    store = MemoryTranscriptStore()
    eng = Engine(
        transcripts=store,
        recordings=MemoryRecordingStore(),
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=asr,
        config=EngineConfig(flush_interval_s=0.05, hold_s=hold_s),
    )
    return eng, store


def in_order(utts: list[UtteranceRecord]) -> list[UtteranceRecord]:
    return sorted(utts, key=lambda u: (u.start, u.track))


async def replay(
    eng: Engine, fixture: str, *, realtime: bool = False, emit: Callable[[dict[str, Any]], None] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def record(e: dict[str, Any]) -> None:
        events.append({**e, "mono": time.monotonic()})
        if emit is not None:
            emit(e)

    summary = await replay_one(eng, load_fixture(FIXTURES / fixture), realtime=realtime, emit=record)
    assert summary.status == "ended" and summary.failed_utterances == 0
    return summary.call_id, [e for e in events if e["event"] == "final"]


@pytest.mark.parametrize(
    ("script", "phones", "emails", "want"),
    [
        (
            ["Please write to reception.", "At example.org."],
            [],
            [("reception", "example.org")],
            ["Please write to.", "[EMAIL]."],
        ),
        (
            ["My number is 555 123.", "4567, thanks."],
            ["5551234567"],
            [],
            ["My number is [PHONE].", ", thanks."],
        ),
    ],
)
async def test_an_entity_split_over_two_finals_is_stored_redacted(
    tmp_path: Path, script: list[str], phones: list[str], emails: list[tuple[str, str]], want: list[str]
) -> None:
    eng, store = engine(tmp_path, ScriptedAsr({0: script}))
    call_id, finals = await replay(eng, "example_call.flac")  # two utterances on one track
    stored = in_order(await store.get_utterances(call_id))
    assert [u.text for u in stored] == want
    assert leaks(" ".join(u.text for u in stored), phones, emails) == []
    # What replay prints is what was stored, printed when it was committed.
    assert [(f["start"], f["text"]) for f in finals] == [(u.start, u.text) for u in stored]
    assert sum(sum(u.redactions.values()) for u in stored) == 1


async def test_a_closed_final_is_not_held(tmp_path: Path) -> None:
    eng, store = engine(tmp_path, ScriptedAsr({0: ["Hello, how can I help?", "Thanks, bye."]}))
    call_id, _ = await replay(eng, "example_call.flac")
    assert [u.text for u in in_order(await store.get_utterances(call_id))] == [
        "Hello, how can I help?",
        "Thanks, bye.",
    ]


async def test_a_held_final_is_flushed_over_redacted_at_the_end_of_the_call(tmp_path: Path) -> None:
    eng, store = engine(tmp_path, ScriptedAsr({0: ["Thanks.", "My email is jane dot doe at"]}))
    call_id, finals = await replay(eng, "example_call.flac")
    stored = in_order(await store.get_utterances(call_id))
    assert [u.text for u in stored] == ["Thanks.", "My email is [EMAIL]"]
    assert [f["text"] for f in finals] == [u.text for u in stored]


async def test_the_bound_releases_a_held_final_before_the_next_one(tmp_path: Path) -> None:
    """Real time: the second utterance ends ~3.5 s after the first; a 0.5 s bound stores the first alone
    (over-redacted) long before; the second, a continuation, is redacted with what it continues."""
    eng, store = engine(tmp_path, ScriptedAsr({0: ["My number is 555 123.", "4567."]}), hold_s=0.5)
    call_id, finals = await replay(eng, "example_call.flac", realtime=True)
    stored = in_order(await store.get_utterances(call_id))
    assert [u.text for u in stored] == ["My number is [PHONE].", "[PHONE]."]
    assert finals[1]["mono"] - finals[0]["mono"] > 2.0
    assert finals[0]["time_to_final"] < 1.5  # bound + ASR, not the next utterance


async def test_a_held_final_does_not_hold_up_the_other_track(tmp_path: Path) -> None:
    """Track 0 holds "... 555 123" and its next final's ASR waits until track 1 has committed a final:
    if the hold blocked track 1, this would never finish."""
    gate = asyncio.Event()
    asr = ScriptedAsr(
        {0: ["Hello.", "My number is 555 123.", "4567."], 1: ["What is your number?"]},
        gates={(0, 2): gate},
    )
    eng, store = engine(tmp_path, asr)
    order: list[tuple[int, str]] = []

    def emit(e: dict[str, Any]) -> None:
        if e["event"] == "final":
            order.append((e["track"], e["text"]))
            if e["track"] == 1:
                gate.set()

    async with asyncio.timeout(60):
        call_id, _ = await replay(eng, "call_phi", emit=emit)
    assert order.index((1, "What is your number?")) < order.index((0, "My number is [PHONE]."))
    stored = await store.get_utterances(call_id)
    track0 = sorted((u for u in stored if u.track == 0), key=lambda u: u.seq)
    assert [u.text for u in track0[:3]] == ["Hello.", "My number is [PHONE].", "[PHONE]."]
    assert [u.start for u in track0] == sorted(u.start for u in track0)  # seq order is time order


async def test_a_joint_redaction_failure_stores_neither_final(tmp_path: Path) -> None:
    """Fail closed across the hold: when the joined text cannot be redacted, both finals are counted
    failed and nothing is stored (never the held half raw)."""

    def redactor(text: str, variables: object, context: str | None = None) -> tuple[str, dict[str, int]]:
        if "555" in text and "4567" in text:
            raise RuntimeError("redactor exploded")
        return text, {}

    store = MemoryTranscriptStore()
    eng = Engine(
        transcripts=store,
        recordings=MemoryRecordingStore(),
        keys=LocalKeyFile(tmp_path / "kek.json"),
        asr=ScriptedAsr({0: ["My number is 555 123.", "4567."]}),
        redactor=RedactFn(redactor, takes_context=True),
        config=EngineConfig(flush_interval_s=0.05),
    )
    summary = await replay_one(
        eng, load_fixture(FIXTURES / "example_call.flac"), realtime=False, emit=lambda e: None
    )
    assert summary.failed_utterances == 2 and summary.utterances == 0
    assert await store.get_utterances(summary.call_id) == []

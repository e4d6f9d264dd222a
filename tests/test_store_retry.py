"""A final is not lost to a store that is briefly unavailable (a locked SQLite, a fail-over): it is
retried with backoff for a bounded time, then counted as failed. Seen from outside: converse.db locked while
SIGTERM drained a call lost the first turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.asr import FakeTranscriber
from storage.errors import StorageUnavailableError
from storage.memory import MemoryTranscriptStore
from storage.protocols import UtteranceRecord
from tests.support import replay_in_process
from worker.calls import engine as engine_mod
from worker.metrics import Metrics


class FlakyStore(MemoryTranscriptStore):
    """Refuses the first `fails` appends as unavailable."""

    def __init__(self, fails: int) -> None:
        super().__init__()
        self.fails = fails
        self.attempts = 0

    async def append_utterance(self, record: UtteranceRecord) -> None:
        self.attempts += 1
        if self.attempts <= self.fails:
            raise StorageUnavailableError("database is locked")
        await super().append_utterance(record)


async def _replay(store: FlakyStore, tmp_path: Path) -> tuple[list[UtteranceRecord], Metrics]:
    transcriber = FakeTranscriber(["Hello, I would like an appointment."])
    summary, metrics = await replay_in_process(transcriber, store, tmp_path)
    return await store.get_utterances(summary.call_id), metrics


async def test_a_briefly_unavailable_store_loses_no_final(tmp_path: Path) -> None:
    store = FlakyStore(fails=3)
    utts, metrics = await _replay(store, tmp_path)
    assert utts and utts[0].seq == 0 and utts[0].text == "Hello, I would like an appointment."
    assert store.attempts == len(utts) + 3
    assert metrics.registry.get_sample_value("converse_utterances_failed_total", {"stage": "storage"}) is None


async def test_a_store_down_for_longer_fails_the_final_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_mod, "STORE_RETRY_S", 0.6)
    store = FlakyStore(fails=10**6)
    utts, metrics = await _replay(store, tmp_path)
    assert utts == []
    failed = metrics.registry.get_sample_value("converse_utterances_failed_total", {"stage": "storage"})
    assert failed is not None and failed >= 1

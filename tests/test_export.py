"""Audio export is bounded (issue 19, item 2): a sender whose RTP timestamps jump forward gets no more
silence in a WAV export than the call lasted (one gap at most `MAX_GAP_S`), in the CLI and the admin API
alike, built piece by piece; exported files are owner-only (item 8)."""

from __future__ import annotations

import io
import os
import stat
import wave
from datetime import UTC, datetime
from pathlib import Path

from media.export import MAX_GAP_S, PIECE_BYTES, pcm_pieces, silence_budget_s, wav_header
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.opus import OpusEncoder
from storage.protocols import CallInfo, format_timestamp
from tests.api_support import open_api
from tests.cli_plant import plant_call
from tests.support import cli_env, run_cli
from worker.auth.access import Role
from worker.calls.track import TrackSealer

SECOND = SAMPLE_RATE * 2  # bytes of 48 kHz s16 mono
JUMP = 100 * SAMPLE_RATE  # each frame 100 s after the previous one
JUMPS = [i * JUMP for i in range(6)]  # unbounded: 500 s of silence (48 MB) for six frames


def _packet() -> bytes:
    return OpusEncoder().encode(bytes(FRAME_SAMPLES * 2))


def test_gaps_are_capped_per_gap_and_in_total() -> None:
    frames = [(ts, _packet()) for ts in JUMPS]
    one_gap = b"".join(pcm_pieces(frames[:2], max_silence_s=10_000))
    assert len(one_gap) == (MAX_GAP_S * SAMPLE_RATE + 2 * FRAME_SAMPLES) * 2
    pieces = list(pcm_pieces(frames, max_silence_s=90))
    assert all(len(p) <= PIECE_BYTES + FRAME_SAMPLES * 2 for p in pieces)
    assert sum(map(len, pieces)) == (90 * SAMPLE_RATE + 6 * FRAME_SAMPLES) * 2
    # Short gaps (lost frames) keep the timeline exactly, as before.
    lossy = [(0, _packet()), (5 * FRAME_SAMPLES, _packet())]
    assert len(b"".join(pcm_pieces(lossy, max_silence_s=60))) == 6 * FRAME_SAMPLES * 2


def test_silence_budget_is_the_wall_clock_length_plus_one_gap() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert silence_budget_s("2026-12-03T23:59:00.000Z", "2026-12-03T23:59:11.000Z", now) == 11 + MAX_GAP_S
    assert silence_budget_s("2026-12-03T23:59:00.000Z", None, now) == 60 + MAX_GAP_S


def test_wav_header_sizes() -> None:
    with wave.open(io.BytesIO(wav_header(4) + b"\0" * 4)) as w:
        assert (w.getnframes(), w.getframerate()) == (2, SAMPLE_RATE)
    assert wav_header(None)[4:8] == b"\xff\xff\xff\xff"


def test_cli_wav_export_of_jumping_timestamps_is_bounded_and_private(tmp_path: Path) -> None:
    data, kek = tmp_path / "data", tmp_path / "keys" / "kek.json"
    plant_call(data, kek, "jumpy", "default", timestamps=JUMPS)
    env = cli_env(data, kek)
    out = tmp_path / "out.wav"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)  # an existing file is made owner-only too
    run_cli(["export", "--call", "jumpy", "-o", str(out)], env)
    # The call lasted well under a second of wall-clock time: at most one gap's silence plus the frames.
    assert out.stat().st_size <= 44 + (MAX_GAP_S + 2) * SECOND
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with wave.open(str(out)) as w:
        assert w.getnframes() * 2 == out.stat().st_size - 44
    ogg = tmp_path / "out.ogg"
    run_cli(["export", "--call", "jumpy", "-o", str(ogg)], env)
    assert stat.S_IMODE(ogg.stat().st_mode) == 0o600


async def test_http_wav_export_of_jumping_timestamps_is_bounded(tmp_path: Path) -> None:
    async with open_api(tmp_path) as api:
        store = api.stores.transcripts
        now = format_timestamp(datetime.now(UTC))
        await store.create_call(CallInfo("jumpy", "org-a", "whip", now))
        sealer = await TrackSealer.create(
            call_id="jumpy", track=0, keys=api.keys, transcripts=store, recordings=api.stores.recordings
        )
        for ts in JUMPS:
            await sealer.seal(ts, _packet())
        await sealer.close()
        await store.end_call("jumpy", format_timestamp(datetime.now(UTC)), "ended", None)
        resp = await api.client.get(
            "/v1/calls/jumpy/tracks/0/recording?format=wav", headers=api.auth(Role.OWNER)
        )
        body = await resp.read()
        assert resp.status == 200
        assert len(body) <= 44 + (MAX_GAP_S + 2) * SECOND

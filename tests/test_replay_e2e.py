"""The whole path on a committed fixture, with the real model, real Opus and real AES-GCM:
replay -> stored redacted transcript + sealed audio -> export, and a PHI canary over the data directory."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from media.fixtures import load_fixture
from tests.support import FIXTURES, cli_env, json_lines, run_cli, scan_tree, written_forms

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[dict], Path]:
    root = tmp_path_factory.mktemp("replay")
    env = cli_env(root / "data", root / "keys" / "kek.json")
    out = run_cli(["replay", "--json", str(FIXTURES / "call_phi")], env)
    return env, json_lines(out.stdout), root


def _call_id(events: list[dict]) -> str:
    started = [e for e in events if e["event"] == "call_started"]
    assert len(started) == 1
    return str(started[0]["call_id"])


def test_replay_prints_events_and_stores_redacted_transcript(replayed: tuple[dict, list, Path]) -> None:
    env, events, _ = replayed
    call_id = _call_id(events)
    finals = [e for e in events if e["event"] == "final"]
    ended = [e for e in events if e["event"] == "call_ended"]
    assert finals and len(ended) == 1
    assert ended[0]["frames_lost"] == 0
    assert ended[0]["frames_sealed"] == ended[0]["frames_received"] > 0
    for f in finals:
        assert {"call_id", "track", "start", "end", "text"} <= f.keys()
        assert 0 <= f["start"] < f["end"]
    assert {f["track"] for f in finals} == {0, 1}

    shown = json_lines(run_cli(["transcripts", "show", call_id, "--json"], env).stdout)
    key = lambda x: (x["track"], x["start"])  # noqa: E731
    assert [(u["track"], u["text"]) for u in sorted(shown, key=key)] == [
        (f["track"], f["text"]) for f in sorted(finals, key=key)
    ]
    for u in shown:
        assert u["committed_at"].endswith("Z") and len(u["committed_at"]) == 24
    text = " ".join(u["text"] for u in shown).lower()
    meta = json.loads((FIXTURES / "call_phi" / "fixture.json").read_text())
    for word in meta["expected"]["content_words"]:
        assert word.lower() in text
    assert "[phone]" in text and "[email]" in text and "[card]" in text
    digits = re.sub(r"\D", "", text)
    for phi in meta["expected"]["phi"]:
        for form in written_forms(phi):
            assert form.lower() not in text
        phi_digits = re.sub(r"\D", "", phi)
        if len(phi_digits) >= 7:  # however the ASR grouped or punctuated them
            assert phi_digits[:7] not in digits and phi_digits[-7:] not in digits

    listed = json_lines(run_cli(["transcripts", "list", "--json"], env).stdout)
    assert [c["call_id"] for c in listed] == [call_id]


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 48000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2000) -> float:
    n = min(len(a), len(b)) - max_lag
    best = 0.0
    x = a[max_lag : max_lag + n]
    for lag in range(0, 2 * max_lag, 8):
        y = b[lag : lag + n]
        if len(y) < n:
            break
        c = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))
        best = max(best, c)
    return best


def test_export_round_trip_correlates_with_fixture(replayed: tuple[dict, list, Path]) -> None:
    env, events, root = replayed
    call_id = _call_id(events)
    fixture = load_fixture(FIXTURES / "call_phi")
    for track in (0, 1):
        wav = root / f"t{track}.wav"
        ogg = root / f"t{track}.ogg"
        res = json.loads(
            run_cli(
                ["export", "--call", call_id, "--track", str(track), "-o", str(wav), "--json"], env
            ).stdout
        )
        assert res["complete"] is True
        run_cli(["export", "--call", call_id, "--track", str(track), "-o", str(ogg)], env)
        import av

        with av.open(str(ogg)) as c:
            assert c.streams.audio[0].codec_context.name == "opus"
            samples = sum(f.samples for f in c.decode(audio=0))
        ref = fixture.tracks[track].pcm.astype(np.float64)
        assert abs(samples - len(ref)) < 48000 * 0.1
        got = _read_wav(wav)
        assert _best_correlation(ref, got) > 0.8


def test_phi_canary_over_data_directory(replayed: tuple[dict, list, Path]) -> None:
    env, events, _ = replayed
    call_id = _call_id(events)
    meta = json.loads((FIXTURES / "call_phi" / "fixture.json").read_text())
    needles: set[str] = set()
    for phi in meta["expected"]["phi"]:
        needles |= written_forms(phi)
    for v in meta.get("variables", {}).values():
        needles.add(v)
    data = Path(env["CONVERSE_DATA_DIR"])
    assert scan_tree(data, needles) == []
    # No Opus frame in the clear: take every stored payload (through an authorised export) and look for it.
    from media.recording import read_recording
    from storage.keys import LocalKeyFile, track_key_context

    keys = LocalKeyFile(Path(env["CONVERSE_KEK_FILE"]))
    import asyncio

    from storage.factory import open_stores

    async def payloads() -> list[bytes]:
        stores = await open_stores(data)
        try:
            out = []
            for t in (0, 1):
                info = await stores.transcripts.get_track(call_id, t)
                raw = await stores.recordings.read_track(call_id, t)
                key = keys.unwrap(info.wrapped_key, track_key_context(call_id, t))
                rec = read_recording(raw, lambda h, key=key: key)
                out += [p for _, p in rec.frames]
            return out
        finally:
            await stores.close()

    frames = asyncio.run(payloads())
    assert len(frames) > 100
    blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    leaked = [f for f in frames if len(f) >= 12 and any(f[2:14] in b for b in blobs)]
    assert leaked == []

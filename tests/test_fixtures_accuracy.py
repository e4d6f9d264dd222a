"""WER of the short-window mode against the padded 30 s baseline over the 40+ espeak fixtures.

The issue's bar: short-window WER <= padded WER + 1 point absolute. Both figures, and the encoder time per
utterance in each mode, are printed (`pytest -s`)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import av
import ctranslate2
import numpy as np
import pytest

from media.asr import WhisperTranscriber
from media.wer import corpus_wer

ASR = Path(__file__).resolve().parents[1] / "fixtures" / "asr"


def decode_16k(path: Path) -> bytes:
    out: list[bytes] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray().tobytes() for f in resampler.resample(frame)]
        out += [f.to_ndarray().tobytes() for f in resampler.resample(None)]
    return b"".join(out)


def test_manifest_has_40_utterances_with_several_voices_and_speeds() -> None:
    items = json.loads((ASR / "manifest.json").read_text())["utterances"]
    assert len(items) >= 40
    assert len({i["voice"] for i in items}) >= 4
    assert min(i["wpm"] for i in items) <= 130 and max(i["wpm"] for i in items) >= 170
    assert all((ASR / i["file"]).is_file() for i in items)


@pytest.mark.slow
def test_short_window_wer_within_one_point_of_padded_baseline() -> None:
    items = json.loads((ASR / "manifest.json").read_text())["utterances"]
    pcms = [decode_16k(ASR / i["file"]) for i in items]
    short = WhisperTranscriber(word_timestamps=False)
    padded = WhisperTranscriber(short_window=False, word_timestamps=False)
    results: dict[str, float] = {}
    for name, transcriber in (("padded", padded), ("short", short)):
        pairs = [(i["text"], transcriber.transcribe(pcm).text) for i, pcm in zip(items, pcms, strict=True)]
        results[name] = corpus_wer(pairs)

    # Encoder cost alone, per utterance: the padded 3000-frame window against the short one.
    model = short._model
    enc_short, enc_padded = [], []
    for pcm in pcms:
        short.transcribe(pcm)
        enc_short.append(short.last_encode_s)
        feats = model.feature_extractor(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)[:, :-1]
        full = np.pad(feats, ((0, 0), (0, 3000 - feats.shape[-1])))
        t0 = time.perf_counter()
        model.model.encode(ctranslate2.StorageView.from_array(full[None]))
        enc_padded.append(time.perf_counter() - t0)
    seconds = statistics.mean(len(p) / 32_000 for p in pcms)
    print(
        f"\n{len(items)} utterances (mean {seconds:.2f} s): WER padded {results['padded']:.2%}, "
        f"short {results['short']:.2%}; encoder median padded {statistics.median(enc_padded) * 1000:.0f} ms, "
        f"short {statistics.median(enc_short) * 1000:.0f} ms"
    )
    assert results["short"] <= results["padded"] + 0.01

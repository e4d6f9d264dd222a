"""48 -> 16 kHz streaming resampler: frame-size independence, accuracy, anti-aliasing, cost."""

from __future__ import annotations

import time

import numpy as np
import pytest

from media.resample import TAPS, Resampler48to16

DELAY_16K = (TAPS - 1) // 2 // 3  # group delay in output samples (20)


def _sine(freq: float, seconds: float, amplitude: float = 10_000.0, rate: int = 48_000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")


def _run(pcm: bytes, sizes: list[int]) -> bytes:
    r = Resampler48to16()
    out, off, i = [], 0, 0
    while off < len(pcm):
        n = sizes[i % len(sizes)] * 2
        out.append(r.process(pcm[off : off + n]))
        off, i = off + n, i + 1
    return b"".join(out) + r.flush()


def test_frame_size_does_not_change_output() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(-20_000, 20_000, 48_000, dtype=np.int16).astype("<i2").tobytes()
    whole = _run(pcm, [48_000])
    assert _run(pcm, [960]) == whole  # the production case: 20 ms frames
    assert _run(pcm, [1, 7, 480, 961, 1000, 2]) == whole  # odd sizes, phase carried across calls
    assert len(whole) // 2 == 16_000 + DELAY_16K


def test_each_20ms_frame_gives_320_samples() -> None:
    r = Resampler48to16()
    frame = _sine(440, 0.02).tobytes()
    assert {len(r.process(frame)) for _ in range(50)} == {640}


def test_sine_passes_without_clicks_at_frame_boundaries() -> None:
    x = _sine(1000, 1.0)
    y = np.frombuffer(_run(x.tobytes(), [960]), dtype="<i2").astype(float)
    ideal = 10_000.0 * np.sin(2 * np.pi * 1000 * (np.arange(len(y)) - DELAY_16K) / 16_000)
    steady = slice(TAPS, 16_000)  # after the filter has filled
    # Sample by sample within ~0.1% of full scale: frame boundaries (every 320) leave no step.
    assert np.max(np.abs(y[steady] - ideal[steady])) < 40


def test_above_nyquist_is_filtered_out() -> None:
    y = np.frombuffer(_run(_sine(10_000, 1.0).tobytes(), [960]), dtype="<i2").astype(float)
    rms = np.sqrt(np.mean(y[TAPS:16_000] ** 2))
    assert 20 * np.log10(max(rms, 1e-9) / (10_000 / np.sqrt(2))) < -60  # would alias to 6 kHz


def test_cost_per_frame() -> None:
    r = Resampler48to16()
    frame = _sine(440, 0.02).tobytes()
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        r.process(frame)
    us = (time.perf_counter() - t0) / n * 1e6
    print(f"resampler: {us:.1f} us per 20 ms frame")
    assert us < 500, us  # ~20 us on the 2-core CI machine; the bound only catches gross regressions


@pytest.mark.parametrize(("size", "out"), [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2)])
def test_tiny_inputs(size: int, out: int) -> None:
    assert len(Resampler48to16().process(bytes(2 * size))) == 2 * out  # output k sits at input 3k

"""Headless Chromium for browser tests (RECIPES.md): Debian's chromium + chromedriver, a fake microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def require_tools(*tools: str) -> None:
    """Skip locally when a tool is missing; fail under CI (CI=true), where the test command installs them."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if not missing:
        return
    reason = f"missing {', '.join(missing)} (apt-get install chromium chromium-driver espeak-ng sox)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def speech_wav(directory: Path, text: str, *, pad_s: float = 0.5) -> Path:
    """`text` spoken by espeak-ng as a 48 kHz mono 16-bit WAV with `pad_s` of silence before and after."""
    raw = directory / "raw.wav"
    out = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "sox",
            str(raw),
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out),
            "pad",
            str(pad_s),
            str(pad_s),
        ],
        check=True,
    )
    return out


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def chromium(fake_audio: Path, profile_dir: Path) -> Any:
    """A headless Chromium WebDriver whose microphone plays `fake_audio` once."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_audio}%noloop",
        "--allow-loopback-in-peer-connection",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def envelope(
    pcm: npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]], hop: int = 480
) -> npt.NDArray[np.float64]:
    """RMS per 10 ms (at 48 kHz)."""
    x = np.asarray(pcm, dtype=np.float64)
    frames = len(x) // hop
    return np.asarray(np.sqrt(np.mean(x[: frames * hop].reshape(frames, hop) ** 2, axis=1)), dtype=np.float64)


def best_correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], max_lag: int) -> float:
    """Highest Pearson correlation of `b` against `a` shifted by -max_lag..max_lag frames."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n < 50 or np.std(x[:n]) == 0 or np.std(y[:n]) == 0:
            continue
        best = max(best, float(np.corrcoef(x[:n], y[:n])[0, 1]))
    return best

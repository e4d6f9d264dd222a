"""SFrame seal/unseal throughput on real 20 ms Opus frames, per suite, beside raw AES-GCM in the same run.

Usage: .venv/bin/python benchmarks/sframe_bench.py
Encodes SECONDS of a synthetic tone + noise with PyAV's libopus (48 kHz mono, 960-sample frames), then
times `media.sframe.protect`/`unprotect` for every suite against raw `cryptography` AESGCM on the same
frames. CTRs start at FIRST_CTR (a call 22 minutes in, so headers carry a 3-byte CTR, not the 1-byte
ones of a fresh key).

The raw baseline is the least any per-frame AEAD must do: `AESGCM(key).encrypt(nonce, frame, aad)` with
a 12-byte nonce from the frame's counter (`ctr.to_bytes(12)`) and, as AAD, that frame's SFrame header
(precomputed, outside the timing), so the ratio measures SFrame's own per-frame work: the key lookup, the
header encoding, the salt XOR and the output concatenation. The same baseline without AAD is reported
too (`*_no_aad`). Rounds are interleaved and the best round is kept, so a noisy neighbour slows every
side alike. Prints human lines; the last line is one JSON object. Writes benchmarks/results/
sframe_bench.json and .png (the PNG is skipped with a note if matplotlib is missing).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import cryptography
import numpy as np
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media import sframe

SECONDS = 2.0
RATE = 48000
FRAME_SAMPLES = 960
BITRATE = 48000
ROUNDS = 40  # many short interleaved rounds: on a shared machine the best one is a quiet one
REPEATS = 3  # passes over the frame list per timed round
KID = 7
FIRST_CTR = 1 << 16
RESULTS = Path(__file__).resolve().parent / "results"


def opus_frames() -> list[bytes]:
    t = np.arange(int(SECONDS * RATE)) / RATE
    rng = np.random.default_rng(1)
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)) * 32767
    pcm16 = np.clip(pcm, -32768, 32767).astype(np.int16)
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16"
    enc.bit_rate, enc.time_base = BITRATE, Fraction(1, RATE)
    packets: list[bytes] = []
    for i in range(0, pcm16.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(
            pcm16[i : i + FRAME_SAMPLES].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
        packets.extend(bytes(p) for p in enc.encode(frame))
    packets.extend(bytes(p) for p in enc.encode(None))
    return [p for p in packets if p]


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(REPEATS):
        fn()
    return time.perf_counter() - start


def best(fns: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Best (shortest) seconds per pass for each fn, rounds interleaved."""
    out = {name: float("inf") for name in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            out[name] = min(out[name], timed(fn) / REPEATS)
    return out


def sframe_fns(
    impl: ModuleType, suite: int, key: bytes, frames: list[bytes], sealed: list[bytes]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(seal, unseal) passes over the frames through `impl.protect`/`impl.unprotect`."""
    protect, unprotect = impl.protect, impl.unprotect  # media.sframe, or another version to compare

    def seal() -> None:
        for ctr, f in enumerate(frames, FIRST_CTR):
            protect(suite, key, KID, ctr, f)

    def unseal() -> None:
        for s in sealed:
            unprotect(suite, key, s)

    return seal, unseal


def raw_fns(
    key: bytes, frames: list[bytes], aads: list[bytes | None]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(seal, unseal) passes of raw AES-GCM: nonce from the counter, `aads[i]` as AAD."""
    raw = AESGCM(key)
    enc, dec = raw.encrypt, raw.decrypt
    items = list(zip(frames, aads, strict=True))
    sealed = [(enc(c.to_bytes(12), f, a), a) for c, (f, a) in enumerate(items, FIRST_CTR)]

    def seal() -> None:
        for ctr, (f, a) in enumerate(items, FIRST_CTR):
            enc(ctr.to_bytes(12), f, a)

    def unseal() -> None:
        for ctr, (s, a) in enumerate(sealed, FIRST_CTR):
            dec(ctr.to_bytes(12), s, a)

    return seal, unseal


def suite_key(suite: int) -> bytes:
    return os.urandom(32 if suite == sframe.CipherSuite.AES_256_GCM_SHA512_128 else 16)


def bench_suite(suite: sframe.CipherSuite, frames: list[bytes]) -> dict[str, float]:
    key = suite_key(suite)
    sealed = [sframe.protect(suite, key, KID, c, f) for c, f in enumerate(frames, FIRST_CTR)]
    assert [sframe.unprotect(suite, key, s) for s in sealed] == frames
    headers: list[bytes | None] = [s[: sframe.parse_header(s)[2]] for s in sealed]
    seal, unseal = sframe_fns(sframe, suite, key, frames, sealed)
    raw_seal, raw_unseal = raw_fns(key, frames, headers)
    bare_seal, bare_unseal = raw_fns(key, frames, [None] * len(frames))
    t = best(
        {
            "seal": seal,
            "unseal": unseal,
            "raw_seal": raw_seal,
            "raw_unseal": raw_unseal,
            "bare_seal": bare_seal,
            "bare_unseal": bare_unseal,
        }
    )
    n = len(frames)
    return {
        "frames_per_s": round(n / t["seal"]),
        "unprotect_frames_per_s": round(n / t["unseal"]),
        "raw_aesgcm_encrypt_frames_per_s": round(n / t["raw_seal"]),
        "raw_aesgcm_decrypt_frames_per_s": round(n / t["raw_unseal"]),
        "ratio_vs_raw_aesgcm": round(t["seal"] / t["raw_seal"], 3),
        "unprotect_ratio_vs_raw_aesgcm": round(t["unseal"] / t["raw_unseal"], 3),
        "ratio_vs_raw_aesgcm_no_aad": round(t["seal"] / t["bare_seal"], 3),
        "unprotect_ratio_vs_raw_aesgcm_no_aad": round(t["unseal"] / t["bare_unseal"], 3),
    }


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
        "platform": platform.platform(),
    }


def plot(result: dict[str, dict[str, float]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: PNG skipped"
    names = list(result)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(x - 0.2, [result[n]["frames_per_s"] for n in names], 0.4, label="SFrame protect")
    ax.bar(x + 0.2, [result[n]["unprotect_frames_per_s"] for n in names], 0.4, label="SFrame unprotect")
    raw = max(result[n]["raw_aesgcm_encrypt_frames_per_s"] for n in names)
    ax.axhline(raw, color="k", linestyle="--", linewidth=1, label="raw AES-GCM encrypt (best)")
    ax.axhline(200_000, color="r", linestyle=":", linewidth=1, label="target 200k frames/s")
    ax.set_xticks(x, [n.replace("_", "_\u200b") for n in names], fontsize=7)
    ax.set_ylabel("20 ms Opus frames per second (one core)")
    ax.set_title("SFrame throughput per cipher suite")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def main() -> None:
    frames = opus_frames()
    sizes = [len(f) for f in frames]
    print(f"{len(frames)} Opus frames, {min(sizes)}-{max(sizes)} bytes (mean {sum(sizes) / len(sizes):.0f})")
    print("raw = AESGCM.encrypt(ctr.to_bytes(12), frame, header AAD); ratio = SFrame time / raw time")
    suites: dict[str, dict[str, float]] = {}
    for suite in sframe.CipherSuite:
        r = suites[suite.name] = bench_suite(suite, frames)
        print(
            f"{suite.name:28s} protect {r['frames_per_s']:>9,.0f}/s"
            f"  unprotect {r['unprotect_frames_per_s']:>9,.0f}/s"
            f"  raw AES-GCM {r['raw_aesgcm_encrypt_frames_per_s']:>9,.0f}/s"
            f"  ratio {r['ratio_vs_raw_aesgcm']:.2f}x (unprotect {r['unprotect_ratio_vs_raw_aesgcm']:.2f}x)"
        )
    summary = {
        "suites": suites,
        "frames": {
            "count": len(frames),
            "mean_bytes": round(sum(sizes) / len(sizes), 1),
            "first_ctr": FIRST_CTR,
        },
        "baseline": "AESGCM(key).encrypt(ctr.to_bytes(12), frame, sframe_header); *_no_aad: aad=None",
        "timing": f"best of {ROUNDS} interleaved rounds of {REPEATS} passes",
        "machine": machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sframe_bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(plot(suites, RESULTS / "sframe_bench.png"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Fuzz the fixture reader: broken audio files, bad fixture.json and junk directories give a FixtureError,
one line, naming the file; nothing else escapes `load_fixture` / `decode_audio`."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from media.fixtures import FixtureError, decode_audio, load_fixture
from tests.fuzz.seeds import audio_seeds, mutate_bytes, tone, wav_bytes
from tests.fuzz.support import fuzz, one_line

with tempfile.TemporaryDirectory(prefix="fuzz-fixture-seeds-") as _seed_dir:
    SEEDS = audio_seeds(Path(_seed_dir))
SUFFIXES = st.sampled_from([".wav", ".flac", ".ogg", ".opus", ".oga"])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-fixture-") as d:
        yield Path(d)


def check_load(path: Path, *, names: tuple[str, ...]) -> None:
    try:
        fixture = load_fixture(path)
    except FixtureError as exc:
        message = str(exc)
        one_line(message)
        assert any(message.startswith(f"{n}:") for n in names), (message, names)
    else:
        for track in fixture.tracks:
            assert track.pcm.dtype == np.int16 and track.pcm.ndim == 1 and len(track.pcm) > 0


def test_seeds_decode(scratch: Path) -> None:
    for suffix, data in SEEDS.items():
        path = scratch / f"seed{suffix}"
        path.write_bytes(data)
        assert len(decode_audio(path)) > 0


@fuzz(150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(SEEDS)), st.randoms(use_true_random=False), st.sampled_from(["", ".ogg"]))
def test_mutated_audio_file(scratch: Path, suffix: str, rnd: random.Random, rename: str) -> None:
    """Truncated, bit-flipped and garbled files; `rename` also feeds FLAC/WAV bytes behind .ogg."""
    path = scratch / f"mutated{rename or suffix}"
    path.write_bytes(mutate_bytes(rnd, SEEDS[suffix], steps=6))
    check_load(path, names=(path.name,))


@fuzz(80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SUFFIXES, st.binary(max_size=600))
def test_random_bytes_audio_file(scratch: Path, suffix: str, data: bytes) -> None:
    path = scratch / f"random{suffix}"
    path.write_bytes(data)
    check_load(path, names=(path.name,))


@fuzz(40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(SEEDS)), st.integers(0, 2000))
def test_truncated_audio_file(scratch: Path, suffix: str, cut: int) -> None:
    path = scratch / f"truncated{suffix}"
    path.write_bytes(SEEDS[suffix][:cut])
    check_load(path, names=(path.name,))


@fuzz(40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 8), st.sampled_from([8000, 11025, 44100, 48000, 96000]), st.integers(0, 4000))
def test_generated_wav_shapes(scratch: Path, channels: int, rate: int, samples: int) -> None:
    path = scratch / "shape.wav"
    path.write_bytes(wav_bytes(tone(samples / rate, rate=rate).repeat(channels), rate, channels))
    check_load(path, names=(path.name,))


# -- fixture.json ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
META = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries({}, optional={"variables": JSON_VALUES, "expected": JSON_VALUES}).map(json.dumps),
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def fixture_dir(scratch: Path) -> Path:
    d = scratch / "call"
    d.mkdir()
    (d / "0-agent.wav").write_bytes(SEEDS[".wav"])
    return d


@fuzz(200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(META)
def test_bad_fixture_json(fixture_dir: Path, text: str) -> None:
    (fixture_dir / "fixture.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    check_load(fixture_dir, names=("fixture.json",))


@fuzz(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(META)
def test_bad_sidecar_json(scratch: Path, text: str) -> None:
    (scratch / "side.wav").write_bytes(SEEDS[".wav"])
    (scratch / "side.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    check_load(scratch / "side.wav", names=("side.json",))


# Regressions found by this fuzzer (fixed in media/fixtures.py `_read_meta`).
@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[" * 100_000, "fixture.json: invalid fixture.json (RecursionError)"),  # was RecursionError
        (
            '{"expected": ' + "1" * 5000 + "}",
            "fixture.json: invalid fixture.json (ValueError)",
        ),  # was ValueError
    ],
    ids=["deep-nesting", "integer-past-digit-limit"],
)
def test_regression_fixture_json(fixture_dir: Path, text: str, error: str) -> None:
    (fixture_dir / "fixture.json").write_text(text, encoding="utf-8")
    with pytest.raises(FixtureError) as info:
        load_fixture(fixture_dir)
    assert str(info.value) == error


# -- directories with junk -------------------------------------------------------------------------


def test_directory_with_junk(scratch: Path) -> None:
    d = scratch / "junk"
    d.mkdir()
    (d / "notes.txt").write_text("not audio")
    (d / "sub.wav").mkdir()  # a directory with an audio suffix is skipped
    os.symlink(d / "missing.flac", d / "dangling.flac")  # so is a dangling link
    os.mkfifo(d / "pipe.ogg")  # and a FIFO (opening one would block)
    with pytest.raises(FixtureError, match=r"^junk: directory has no audio files"):
        load_fixture(d)
    (d / "0-empty.wav").write_bytes(b"")
    (d / "1-text.flac").write_text("RIFF? no, just text\n")
    (d / "2-good.wav").write_bytes(SEEDS[".wav"])
    with pytest.raises(FixtureError) as info:
        load_fixture(d)
    assert str(info.value).startswith("0-empty.wav: ")
    (d / "0-empty.wav").unlink()
    with pytest.raises(FixtureError) as info:
        load_fixture(d)
    assert str(info.value).startswith("1-text.flac: ")
    (d / "1-text.flac").unlink()
    assert [t.name for t in load_fixture(d).tracks] == ["2-good.wav"]


def test_missing_and_unsupported(scratch: Path) -> None:
    with pytest.raises(FixtureError, match=r"^nope\.wav: no such fixture$"):
        load_fixture(scratch / "nope.wav")
    (scratch / "call.mp4").write_bytes(SEEDS[".wav"])
    with pytest.raises(FixtureError, match=r"^call\.mp4: unsupported file type"):
        load_fixture(scratch / "call.mp4")


def test_regression_a_tiny_wav_declaring_1_hz_is_refused(tmp_path: Path) -> None:
    """Decode amplification: 4 KB at 1 Hz would resample to 2000 s (417 MB) of 48 kHz PCM."""
    import wave

    path = tmp_path / "one-hertz.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(1)
        w.writeframes(b"\x01\x00" * 2000)
    with pytest.raises(FixtureError, match=r"^one-hertz.wav: unsupported sample rate 1 Hz"):
        load_fixture(path)

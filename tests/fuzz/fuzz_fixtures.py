"""atheris: `load_fixture` on broken audio files and fixture.json raises only a one-line FixtureError
naming the file. Run via scripts/fuzz.sh."""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from media.fixtures import FixtureError, load_fixture

from tests.fuzz.seeds import audio_seeds, mutate_bytes
from tests.fuzz.support import one_line

WORK = Path(tempfile.mkdtemp(prefix="fuzz-fixtures-"))
SEEDS = audio_seeds(WORK)
SUFFIXES = sorted(SEEDS)
CALL = WORK / "call"
CALL.mkdir()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    suffix = SUFFIXES[fdp.ConsumeIntInRange(0, len(SUFFIXES) - 1)]
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 2:  # a directory: a good track and a fuzzed fixture.json
        (CALL / "0.wav").write_bytes(SEEDS[".wav"])
        (CALL / "fixture.json").write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        path, names = CALL, ("fixture.json",)
    else:
        path = WORK / f"track{suffix}"
        if mode == 0:
            path.write_bytes(mutate_bytes(random.Random(fdp.ConsumeInt(8)), SEEDS[suffix], steps=8))
        else:
            path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        names = (path.name,)
    try:
        load_fixture(path)
    except FixtureError as exc:
        one_line(str(exc))
        assert str(exc).startswith(tuple(f"{n}:" for n in names)), str(exc)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

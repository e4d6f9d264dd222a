"""atheris: `read_recording` raises only RecordingError and never returns a frame that was not sealed, in
order; a mutated file never reads back as complete. Run via scripts/fuzz.sh."""

from __future__ import annotations

import random
import sys

import atheris

with atheris.instrument_imports():
    from media.recording import RecordingError, read_recording

from tests.fuzz.seeds import mutate_bytes, recording_key, sealed_recording
from tests.fuzz.support import one_line

SEEDS = [sealed_recording(suite, end=end) for suite in range(1, 6) for end in (True, False)]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    original, _, sealed = SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)]
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        mutated = mutate_bytes(random.Random(fdp.ConsumeInt(8)), original, steps=4)
    elif mode == 1:  # the real header, then fuzzer bytes
        mutated = original[:70] + fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        mutated = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        out = read_recording(mutated, recording_key)
    except RecordingError as exc:
        one_line(str(exc))
        return
    assert out.frames == sealed[: len(out.frames)], "returned a frame that was not sealed"
    if mutated != original:
        assert not out.complete, "a mutated recording read back as complete"


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

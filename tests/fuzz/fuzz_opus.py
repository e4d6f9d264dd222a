"""atheris: `OpusDecoder.decode` raises only OpusError on garbage and keeps decoding good packets. Run via
scripts/fuzz.sh."""

from __future__ import annotations

import random
import sys

import atheris

with atheris.instrument_imports():
    from media.opus import OpusDecoder, OpusError

from tests.fuzz.seeds import mutate_bytes, opus_packets
from tests.fuzz.support import one_line

PACKETS = opus_packets(5)
DECODER = OpusDecoder()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        rnd = random.Random(fdp.ConsumeInt(8))
        payload = mutate_bytes(rnd, rnd.choice(PACKETS))
    else:
        payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        pcm = DECODER.decode(payload)
        assert len(pcm) % 2 == 0 and len(pcm) <= 120 * 48 * 2 * 2, len(pcm)
    except OpusError as exc:
        one_line(str(exc))
    assert 900 * 2 <= len(DECODER.decode(PACKETS[0])) <= 1100 * 2


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""atheris: `worker.webrtc.peer.parse_offer` raises only a one-line OfferError. Run via scripts/fuzz.sh."""

from __future__ import annotations

import random
import sys

import aiortc  # noqa: F401 - imported (uninstrumented) first: instrumenting all of aiortc takes minutes
import atheris
import structlog  # noqa: F401

with atheris.instrument_imports():
    from worker.webrtc.peer import OfferError, parse_offer

from tests.fuzz.seeds import OFFER, mutate_sdp
from tests.fuzz.support import one_line


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # structured: mutate a real offer
        text = mutate_sdp(random.Random(fdp.ConsumeInt(8)), OFFER, steps=6)
    elif mode == 1:
        text = "v=0\r\n" + fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    else:
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        parse_offer(text)
    except OfferError as exc:
        one_line(str(exc))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

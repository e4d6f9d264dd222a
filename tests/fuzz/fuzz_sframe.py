"""atheris: SFrame `parse_header`, `unprotect` and `SFrameReceiver` raise only SFrameError subclasses and
never return plaintext for a frame that was not protected. Run via scripts/fuzz.sh."""

from __future__ import annotations

import random
import sys

import atheris

with atheris.instrument_imports():
    from media import sframe
    from media.sframe_session import SFrameReceiver, SFrameSender

from tests.fuzz.seeds import mutate_bytes
from tests.fuzz.support import one_line

KEY = bytes(range(16))
SENT = {
    suite: [SFrameSender(suite, KEY, kid).protect(b"frame %d" % kid) for kid in (0, 7, 300)]
    for suite in range(1, 6)
}


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    suite = fdp.ConsumeIntInRange(1, 5)
    if fdp.ConsumeBool():
        rnd = random.Random(fdp.ConsumeInt(8))
        original = rnd.choice(SENT[suite])
        frame = mutate_bytes(rnd, original)
        if frame == original:
            return
    else:
        frame = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        kid, ctr, hlen = sframe.parse_header(frame)
        assert (
            1 <= hlen <= min(len(frame), 17) and 0 <= kid <= sframe.MAX_VALUE and 0 <= ctr <= sframe.MAX_VALUE
        )
    except sframe.MalformedHeaderError as exc:
        one_line(str(exc))
    try:
        sframe.unprotect(suite, KEY, frame)
        raise AssertionError("unprotect accepted a frame that was not protected")
    except sframe.SFrameError as exc:
        one_line(str(exc))
    receiver = SFrameReceiver(suite, window=4)
    for kid in (0, 7, 300):
        receiver.add_key(kid, KEY)
    try:
        receiver.unprotect(frame, now=0.0)
        raise AssertionError("receiver accepted a frame that was not protected")
    except sframe.SFrameError as exc:
        one_line(str(exc))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

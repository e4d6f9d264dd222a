"""atheris: `worker.webrtc.whip.parse_sframe_headers` raises only a one-line SFrameHeaderError. Run via
scripts/fuzz.sh."""

from __future__ import annotations

import sys

import aiohttp.web  # noqa: F401 - imported (uninstrumented) first: instrumenting them takes minutes
import aiortc  # noqa: F401
import atheris
import structlog  # noqa: F401

with atheris.instrument_imports():
    from worker.webrtc.whip import SFrameHeaderError, parse_sframe_headers

from tests.fuzz.support import one_line


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    suite = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 20)) if fdp.ConsumeBool() else None
    keys = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()) if fdp.ConsumeBool() else None
    try:
        params = parse_sframe_headers(suite, keys)
    except SFrameHeaderError as exc:
        one_line(str(exc))
        return
    if params is not None:
        assert params.suite in range(1, 6) and params.keys
        assert all(0 <= kid < 2**64 and key for kid, key in params.keys.items())


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

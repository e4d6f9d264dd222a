"""Runtime PHI variables reach a WHIP call in a header, never in the URL, and errors never quote them."""

from __future__ import annotations

import base64
import json

import pytest

from worker.webrtc.whip import SFrameHeaderError, parse_variables_header


def encode(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_variables_header_round_trip() -> None:
    assert parse_variables_header(None) is None
    value = {"patient_name": "Jane Doe", "dob": "1962-03-04"}
    assert parse_variables_header(encode(value)) == value


@pytest.mark.parametrize(
    "raw",
    [
        "%%%not-base64",
        encode(["Jane Doe"]),
        encode({"patient_name": 5}),
        encode({f"v{i}": "x" for i in range(65)}),
        encode({"note": "Jane Doe " * 100}),
    ],
)
def test_bad_variables_header_is_refused_without_echoing_it(raw: str) -> None:
    with pytest.raises(SFrameHeaderError) as err:
        parse_variables_header(raw)
    message = str(err.value)
    assert message.startswith("Converse-Call-Variables: ") and "\n" not in message
    assert "Jane" not in message and raw not in message


@pytest.mark.parametrize("depth", [1000, 5000])
def test_deeply_nested_variables_header_is_a_header_error(depth: int) -> None:
    raw = base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).rstrip(b"=").decode()
    with pytest.raises(SFrameHeaderError, match=r"^Converse-Call-Variables: "):
        parse_variables_header(raw)

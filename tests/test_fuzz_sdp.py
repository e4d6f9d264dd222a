"""Fuzz the SDP offer edge: `parse_offer` and `Calls.start` refuse bad offers with a one-line OfferError.

Bounded for the suite (about 10 s); `scripts/fuzz.sh` runs longer (FUZZ_SCALE, atheris).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.fakes_engine import FakeEngine
from tests.fuzz.seeds import OFFER, OFFER_LINES, SDP_TOKENS, mutate_sdp
from tests.fuzz.support import fuzz, one_line
from worker.webrtc.peer import Calls, OfferError, WebRtcConfig, loopback_only, parse_offer

FAST = WebRtcConfig(loopback_only=True, teardown_timeout_s=0.1, flush_timeout_s=1.0)


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


def check_parse(text: str) -> None:
    try:
        info = parse_offer(text)
    except OfferError as exc:
        one_line(str(exc))
    else:
        assert info.audio_tracks >= 1 and "audio" in info.kinds


def test_seed_offer_is_accepted() -> None:
    assert parse_offer(OFFER).audio_tracks == 1


@fuzz(300)
@given(st.text(max_size=400))
def test_parse_offer_random_text(text: str) -> None:
    check_parse(text)


@fuzz(300)
@given(st.text(max_size=300))
def test_parse_offer_random_text_after_version_line(text: str) -> None:
    check_parse("v=0\r\n" + text)


@fuzz(600)
@given(st.randoms(use_true_random=False))
def test_parse_offer_mutated(rnd: random.Random) -> None:
    check_parse(mutate_sdp(rnd, steps=4))


@fuzz(300)
@given(st.lists(st.sampled_from(OFFER_LINES + SDP_TOKENS), max_size=40), st.sampled_from(["\r\n", "\n"]))
def test_parse_offer_shuffled_lines(lines: list[str], eol: str) -> None:
    check_parse("v=0" + eol + eol.join(lines))


# -- past parse_offer: aiortc's own validation in Calls.start ----------------------------------------


async def start_once(calls: Calls, text: str) -> None:
    try:
        call, answer = await calls.start(text, org_id="fuzz")
    except OfferError as exc:
        one_line(str(exc))
        return
    assert answer.startswith("v=0") and call.tracks
    call.end()
    await call.wait_finished(5)


@fuzz(25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
async def test_calls_start_mutated_offer_is_answered_or_refused(rnd: random.Random) -> None:
    text = mutate_sdp(rnd, steps=2)
    engine = FakeEngine()
    async with Calls(engine, FAST) as calls:
        await start_once(calls, text)
    assert all(s.finishes for s in engine.sessions.values())  # every session created was finished


# -- regressions: offers aiortc fails on are refused by parse_offer (400, not 500) ------------------

DUPLICATE_MID = OFFER + OFFER[OFFER.index("m=audio") :]  # the same m-section (a=mid:0) twice
BARE_MID = OFFER.replace("a=mid:0", "a=mid")  # an a=mid line with no value


async def test_regression_duplicate_mid_is_an_offer_error() -> None:
    async with Calls(FakeEngine(), FAST) as calls:
        with pytest.raises(OfferError):
            await calls.start(DUPLICATE_MID, org_id="fuzz")


async def test_regression_bare_mid_is_an_offer_error() -> None:
    async with Calls(FakeEngine(), FAST) as calls:
        with pytest.raises(OfferError):
            await calls.start(BARE_MID, org_id="fuzz")


@pytest.mark.parametrize("text", [DUPLICATE_MID, BARE_MID], ids=["duplicate-mid", "bare-mid"])
async def test_regression_offers_aiortc_refuses_leave_no_call_running(text: str) -> None:
    """parse_offer refuses them before any state exists: no session is created, no call remains."""
    engine = FakeEngine()
    async with Calls(engine, FAST) as calls:
        with pytest.raises(OfferError, match=r"^malformed SDP: (empty|duplicate) a=mid$"):
            await calls.start(text, org_id="fuzz")
        assert len(calls) == 0
    assert engine.sessions == {}

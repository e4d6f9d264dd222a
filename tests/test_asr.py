"""ASR without a model: FakeTranscriber, hallucination guards, and the AsrScheduler's policies
(loop stays responsive, finals first, bounded queues, shed partials counted, backpressure, failures)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from media.asr import AsrError, AsrScheduler, FakeTranscriber, Guards, apply_guards, is_looping


def test_fake_transcriber_cycles_script_and_records_calls() -> None:
    fake = FakeTranscriber(["one", "two"])
    assert [fake.transcribe(b"\0" * n).text for n in (2, 4, 6)] == ["one", "two", "one"]
    assert fake.calls == [(2, False), (4, False), (6, False)]
    fn = FakeTranscriber(lambda pcm, partial: "p" if partial else f"{len(pcm)}")
    assert fn.transcribe(b"ab").text == "2" and fn.transcribe(b"", partial=True).text == "p"
    assert FakeTranscriber([""]).transcribe(b"").no_speech_prob == 1.0


@pytest.mark.parametrize(
    ("text", "no_speech", "logprob", "kept"),
    [
        ("Thank you.", 0.5, -0.3, ""),  # blacklisted phrase with some no-speech evidence
        ("Thank you.", 0.01, -0.3, "Thank you."),  # ... but a real "thank you" stays
        ("[Music]", 0.0, -0.2, ""),
        ("(upbeat music) Hello there.", 0.0, -0.2, "Hello there."),
        ("Hello there.", 0.9, -1.2, ""),  # Whisper's rule: no_speech high and logprob low
        ("Hello there.", 0.9, -0.2, "Hello there."),  # confident text despite no_speech
        ("Hello there.", 0.0, -2.0, ""),  # the decoder was guessing
        ("the the the the the the the the", 0.0, -0.2, ""),  # repetition loop
        ("I need to see the doctor about the results of the test.", 0.0, -0.3,
         "I need to see the doctor about the results of the test."),
    ],
)  # fmt: skip
def test_guards(text: str, no_speech: float, logprob: float, kept: str) -> None:
    assert apply_guards(text, no_speech, logprob, Guards()) == kept


@pytest.mark.parametrize(
    ("text", "looping"),
    [
        ("How can I help you today? How can I help you today? How can I", True),
        ("and your email for the reminder and your email for the reminder and", True),
        ("My card number is 4111 1111 1111 1111", False),  # digit groups repeat legitimately
        ("no no no no", False),  # units under 3 words are speech, not a decoder loop
        ("Hello there, how are you?", False),
    ],
)
def test_loop_detection(text: str, looping: bool) -> None:
    assert is_looping(text) is looping


def _marker(pcm: bytes, partial: bool) -> str:
    return pcm.decode()


async def test_slow_transcriber_does_not_block_the_loop() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.3), workers=2)
    lags: list[float] = []

    async def probe() -> None:
        for _ in range(60):
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    probing = asyncio.create_task(probe())
    results = await asyncio.gather(*(sched.submit_final(f"c{i}", b"x%d" % i) for i in range(6)))
    await probing
    assert [r.text for r in results] == [f"x{i}" for i in range(6)]
    print(f"loop lag while 6 x 0.3 s transcriptions ran: max {max(lags) * 1000:.1f} ms")
    assert max(lags) < 0.2  # a blocked loop would lag >= 0.3 s; margin for a busy shared CI machine
    await sched.aclose()


async def test_finals_run_before_queued_partials() -> None:
    order: list[str] = []
    gate = threading.Event()

    def script(pcm: bytes, partial: bool) -> str:
        gate.wait(5)
        order.append(pcm.decode())
        return pcm.decode()

    sched = AsrScheduler(FakeTranscriber(script), workers=1)
    first = sched.submit_partial("a", b"p-a")  # takes the only worker
    queued = [sched.submit_partial(k, f"p-{k}".encode()) for k in ("b", "c")]
    await asyncio.sleep(0.05)
    finals = [asyncio.create_task(sched.submit_final(k, f"f-{k}".encode())) for k in ("b", "d")]
    await asyncio.sleep(0.05)
    gate.set()
    assert [(await f).text for f in finals] == ["f-b", "f-d"]
    assert first is not None and (await first) is not None
    # The final for call b made b's pending partial stale (shed); c's partial waited for the finals.
    assert queued[0] is not None and (await queued[0]) is None
    assert queued[1] is not None and (await queued[1]) is not None
    assert order == ["p-a", "f-b", "f-d", "p-c"]
    assert sched.stats().shed_partials == 1
    await sched.aclose()


async def test_a_final_does_not_wait_behind_partials_with_two_workers() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.4), workers=2)
    partials = [sched.submit_partial(k, b"p") for k in ("a", "b", "c")]
    await asyncio.sleep(0.01)
    assert sched.stats().in_flight == 1  # partials may use only workers - 1
    t0 = time.perf_counter()
    assert (await sched.submit_final("d", b"f")).text == "f"
    assert time.perf_counter() - t0 < 0.6  # one model call, not queued behind a partial
    await asyncio.gather(*(p for p in partials if p is not None))
    await sched.aclose()


async def test_overload_sheds_partials_and_keeps_queues_bounded() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.05), workers=2, max_partials=4)
    futures = []
    max_queued = 0
    for round_ in range(20):
        for call in range(10):
            fut = sched.submit_partial(f"call{call}", b"r%d" % round_)
            if fut is not None:
                futures.append(fut)
            max_queued = max(max_queued, sched.stats().queued_partials)
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*futures)
    stats = sched.stats()
    assert max_queued <= 4
    shed = sum(r is None for r in results)
    assert stats.shed_partials == shed + (200 - len(futures)) > 150
    assert stats.completed == sum(r is not None for r in results)
    print(f"200 partials offered: {stats.completed} transcribed, {stats.shed_partials} shed")
    await sched.aclose()


async def test_partials_refused_while_finals_wait() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.2), workers=1)
    finals = [asyncio.create_task(sched.submit_final(k, b"f")) for k in ("a", "b")]
    await asyncio.sleep(0.05)
    assert sched.stats().queued_finals == 1
    assert sched.submit_partial("c", b"p") is None
    assert sched.stats().shed_partials == 1
    await asyncio.gather(*finals)
    await sched.aclose()


async def test_final_backpressure_per_call_never_drops() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.05), workers=2, max_finals_per_call=2)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            s = sched.stats()
            peak = max(peak, s.queued_finals + s.in_flight)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(sched.submit_final("call", b"%d" % i) for i in range(8)))
    watcher.cancel()
    assert [r.text for r in results] == [str(i) for i in range(8)]  # all kept, in order
    assert peak <= 2
    assert sched.stats().completed == 8
    await sched.aclose()


async def test_failure_raises_and_is_counted() -> None:
    def boom(pcm: bytes, partial: bool) -> str:
        raise RuntimeError("model crashed on secret words")

    sched = AsrScheduler(FakeTranscriber(boom), workers=1)
    with pytest.raises(AsrError) as err:
        await sched.submit_final("call-7", b"abcd")
    assert str(err.value) == "transcription failed (call call-7, 4 bytes)"  # no audio, no text
    fut = sched.submit_partial("call-7", b"ab")
    assert fut is not None and (await fut) is None  # partials are best-effort
    assert sched.stats().failed == 2
    await sched.aclose()


async def test_cancelled_final_leaves_the_queue_and_close_drains() -> None:
    sched = AsrScheduler(FakeTranscriber(_marker, delay=0.2), workers=1, max_finals_per_call=1)
    running = asyncio.create_task(sched.submit_final("a", b"run"))
    waiting = asyncio.create_task(sched.submit_final("b", b"queued"))
    blocked = asyncio.create_task(sched.submit_final("a", b"blocked"))  # over a's limit: waits for a slot
    await asyncio.sleep(0.05)
    assert sched.stats().queued_finals == 1
    waiting.cancel()
    blocked.cancel()
    await asyncio.sleep(0)
    assert sched.stats().queued_finals == 0
    await sched.aclose()  # waits for the running one
    assert (await running).text == "run"
    assert sched.stats().in_flight == 0 and sched.stats().completed == 1
    with pytest.raises(AsrError, match="scheduler closed"):
        await sched.submit_final("a", b"late")
    assert sched.submit_partial("a", b"late") is None

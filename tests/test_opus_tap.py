"""Pins aiortc's private encoded-frame seam (media/opus_tap.py) and tests the sans-IO timeline."""

from __future__ import annotations

import asyncio
import fractions
import inspect
import itertools
from collections.abc import Iterator

import aiortc
import aiortc.rtcrtpreceiver as rtcrtpreceiver
import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.opus_tap import OpusTap, Placed, RtpTimeline, TapOverflowError, TappedFrame, opus_packet_samples
from worker.webrtc.peer import loopback_only


@pytest.fixture
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


def test_aiortc_seam_is_what_the_tap_expects() -> None:
    """Fails when an aiortc upgrade moves the seam: then re-read RTCRtpReceiver and adapt opus_tap."""
    assert aiortc.__version__ == "1.16.0"
    receiver_source = inspect.getsource(rtcrtpreceiver.RTCRtpReceiver)
    for needle in (
        "self.__decoder_queue: queue.Queue = queue.Queue()",
        "self.__decoder_queue.put((codec, encoded_frame))",  # _handle_rtp_packet, on the loop
        "self.__decoder_queue.put(None)",  # __stop_decoder: the end of the track
        "self.__decoder_thread = threading.Thread(",
        "self.__jitter_buffer = JitterBuffer(",
        "self.__timestamp_mapper.map(",
    ):
        assert needle in receiver_source
    assert "async def _handle_rtp_packet" in receiver_source
    worker_source = inspect.getsource(rtcrtpreceiver.decoder_worker)
    assert "task = input_q.get()" in worker_source
    assert list(inspect.signature(rtcrtpreceiver.decoder_worker).parameters) == [
        "loop",
        "input_q",
        "output_q",
        "decode_error",
    ]
    jitter = JitterBuffer(capacity=16, prefetch=4)
    assert {"_origin", "_packets"} <= set(vars(jitter)) and jitter.capacity == 16


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.sent = 0
        self.done = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.sent >= self.frames:
            self.done.set()
            self.stop()
            raise MediaStreamError
        await asyncio.sleep(0.02)
        t = np.arange(self.sent * 960, (self.sent + 1) * 960)
        samples = (np.sin(2 * np.pi * 440 * t / 48000) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.sent * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


async def _pair(frames: int, *, decode: bool) -> tuple[list[TappedFrame], int, Tone]:
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tone = Tone(frames)
    transceiver = sender.addTransceiver(tone, direction="sendonly")
    transceiver.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
    )
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    (rx,) = receiver.getTransceivers()
    tap = OpusTap(rx.receiver, loop=asyncio.get_running_loop(), decode=decode)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    decoded = 0

    async def drain() -> None:
        nonlocal decoded
        try:
            while True:
                frame = await rx.receiver.track.recv()
                assert isinstance(frame, av.AudioFrame)
                assert frame.sample_rate == 48000 and frame.samples == 960
                decoded += 1
        except MediaStreamError:
            pass
        finally:
            tap.close()

    got: list[TappedFrame] = []

    async def pump() -> None:
        async for frame in tap:
            got.append(frame)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain())
        tg.create_task(pump())
        await asyncio.wait_for(tone.done.wait(), 30)
        await asyncio.sleep(0.3)
        await sender.close()
        await receiver.close()
    assert tap.dropped == 0
    assert tap.flushed == 4  # aiortc's audio jitter buffer prefetch, taken out at close
    return got, decoded, tone


async def test_tap_delivers_every_frame_in_order(loopback: None) -> None:
    got, decoded, tone = await _pair(50, decode=False)
    assert len(got) == tone.sent == 50
    assert decoded == 0  # no-op decoder: the track only ever sees aiortc's end-of-track
    steps = {(b.rtp_timestamp - a.rtp_timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(got)}
    assert steps == {960}
    assert all(opus_packet_samples(f.payload) == 960 for f in got)
    # The payloads are the Opus packets the sender encoded: they decode to the tone.
    codec = av.CodecContext.create("libopus", "r")
    pcm = []
    for frame in got:
        for out in codec.decode(av.Packet(frame.payload)):
            pcm.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(pcm)
    assert np.abs(audio).max() > 4000


async def test_tap_with_aiortc_decoding_too(loopback: None) -> None:
    got, decoded, tone = await _pair(30, decode=True)
    assert len(got) == tone.sent == 30
    assert decoded == 30 - 4  # aiortc decodes what leaves the jitter buffer; held frames only reach the tap


async def test_overflow_is_loud_and_counted() -> None:
    class Receiver:
        pass

    tap = OpusTap(Receiver(), loop=asyncio.get_running_loop(), max_frames=2)
    for ts in (0, 960, 1920, 2880):
        tap._put(TappedFrame(b"\xf8", ts))
    with pytest.raises(TapOverflowError, match="tap overflow: 2 frames undelivered"):
        await tap.get()
    assert tap.dropped == 4  # the two queued are discarded with the rest: the call fails, all counted
    tap._put(TappedFrame(b"\xf8", 3840))
    assert tap.dropped == 5
    tap._ended = True
    assert await tap.get() is None


def test_timeline_relative_gaps_and_wrap() -> None:
    tl = RtpTimeline()
    start = 0xFFFF_FFFF - 960 * 2 + 1  # wraps after two frames
    assert tl.feed(start) == Placed(0, 0)
    assert tl.feed(start + 960) == Placed(960, 0)
    assert tl.feed((start + 1920) & 0xFFFF_FFFF) == Placed(1920, 0)
    assert tl.feed((start + 960 * 5) & 0xFFFF_FFFF) == Placed(960 * 5, 2)  # frames 3 and 4 lost
    assert tl.feed((start + 960 * 5) & 0xFFFF_FFFF) is None  # duplicate
    assert tl.feed((start + 960 * 4) & 0xFFFF_FFFF) is None  # late
    assert tl.feed((start + 960 * 6) & 0xFFFF_FFFF, 1920) == Placed(960 * 6, 0)  # a 40 ms packet
    assert tl.feed((start + 960 * 8) & 0xFFFF_FFFF) == Placed(960 * 8, 0)  # ... so no gap after it


@pytest.mark.parametrize(
    ("payload", "samples"),
    [
        (bytes([0xFC, 0]), 960),  # CELT FB 20 ms, code 0 (what libopus and Chromium send)
        (bytes([0x78]), 960),  # Hybrid FB 20 ms
        (bytes([0x08 | 0x1]), 1920),  # SILK NB 20 ms, code 1: two frames
        (bytes([0x18, 0]), 2880),  # SILK NB 60 ms
        (bytes([0xFB, 0x03]), 3 * 960),  # CELT 20 ms, code 3, three frames
        (bytes([0x60]), 480),  # Hybrid SWB 10 ms
        (b"", 960),
        (bytes([0xFB]), 960),  # code 3 without its count byte: unknown
    ],
)
def test_opus_packet_samples(payload: bytes, samples: int) -> None:
    assert opus_packet_samples(payload) == samples


def test_timeline_counts_lost_packets_in_the_packet_size_before_the_gap() -> None:
    tl = RtpTimeline()
    assert tl.feed(1000, 2880) == Placed(0, 0)  # 60 ms packets
    assert tl.feed(1000 + 2880, 2880) == Placed(2880, 0)
    assert tl.feed(1000 + 4 * 2880, 2880) == Placed(4 * 2880, 2)  # two 60 ms packets lost, not six
    assert tl.feed(1000 + 5 * 2880, 120) == Placed(5 * 2880, 0)  # 2.5 ms from here on
    assert tl.feed(1000 + 5 * 2880 + 3 * 120, 120) == Placed(5 * 2880 + 360, 2)

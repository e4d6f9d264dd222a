"""What the HTTP handlers share: stores, keys, security (identity + audit), the engine, metrics, calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from storage.factory import Stores
from storage.protocols import KeyProvider
from worker.auth.security import Security
from worker.calls.engine import Engine
from worker.calls.escalations import Escalations
from worker.metrics import Metrics


@dataclass(slots=True)
class AppContext:
    org_id: str
    stores: Stores
    keys: KeyProvider
    security: Security
    engine: Engine
    metrics: Metrics
    escalations: Escalations = field(default_factory=Escalations)
    # (ready, reason): False while draining or while storage is degraded; /readyz reports it.
    readiness: Callable[[], tuple[bool, str]] = lambda: (True, "ok")

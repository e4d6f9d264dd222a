"""Prometheus metrics. Labels are fixed enums (track index, placeholder type, reason): never ids or text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from redact.variables import safe_placeholder


class PlaceholderCounter:
    """`converse_redactions{type}` whose label comes from a fixed set (`redact.variables.safe_placeholder`):
    whatever name reaches `labels`, the unauthenticated /metrics never shows a caller-chosen one."""

    __slots__ = ("_counter",)

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def labels(self, name: str) -> Counter:
        return self._counter.labels(safe_placeholder(name))


class Metrics:
    __slots__ = (
        "active_calls",
        "asr_hung",
        "asr_model",
        "asr_queue_depth",
        "calls_total",
        "frames_lost",
        "frames_received",
        "frames_sealed",
        "redactions",
        "registry",
        "sframe_failures",
        "shed_partials",
        "spool_backlog_bytes",
        "spool_refused_writes",
        "spooled_bytes",
        "store_errors",
        "time_to_final",
        "utterances",
        "utterances_failed",
        "utterances_rejected",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge("converse_active_calls", "Calls in progress", registry=r)
        self.calls_total = Counter("converse_calls", "Calls by how they ended", ["status"], registry=r)
        self.frames_received = Counter("converse_frames_received", "Audio frames received", registry=r)
        self.frames_sealed = Counter("converse_frames_sealed", "Audio frames sealed and stored", registry=r)
        self.frames_lost = Counter("converse_frames_lost", "Audio frames lost before sealing", registry=r)
        self.utterances = Counter("converse_utterances", "Final utterances committed", registry=r)
        self.utterances_failed = Counter(
            "converse_utterances_failed", "Utterances not stored", ["stage"], registry=r
        )
        self.utterances_rejected = Counter(
            "converse_utterances_rejected",
            "Model outputs the hallucination guards rejected, by reason (silence-like ones are not stored;"
            " the others are stored as [inaudible])",
            ["reason"],
            registry=r,
        )
        self.time_to_final = Histogram(
            "converse_time_to_final_seconds",
            "Commit time of a redacted final minus end of speech",
            buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        self.asr_queue_depth = Gauge("converse_asr_queue_depth", "Utterances waiting for ASR", registry=r)
        self.shed_partials = Counter(
            "converse_shed_partials", "Partial transcripts shed under load", registry=r
        )
        self.redactions = PlaceholderCounter(
            Counter("converse_redactions", "Placeholders written, by type", ["type"], registry=r)
        )
        self.sframe_failures = Counter(
            "converse_sframe_failures", "Incoming SFrame frames rejected", ["reason"], registry=r
        )
        self.store_errors = Counter(
            "converse_store_errors", "Storage writes that failed (skipped or retried)", ["op"], registry=r
        )
        self.asr_hung = Gauge(
            "converse_asr_hung_workers", "ASR workers stuck in a model call past the timeout", registry=r
        )
        self.asr_model = Gauge(
            "converse_asr_model_info",
            "The speech model this worker loaded (1), by catalogue name and CTranslate2 compute type",
            ["model", "compute_type"],
            registry=r,
        )
        self.spooled_bytes = Gauge(
            "converse_spooled_bytes", "Bytes spooled locally during storage outages since start", registry=r
        )
        self.spool_backlog_bytes = Gauge(
            "converse_spool_backlog_bytes", "Bytes in the outage spool not delivered yet", registry=r
        )
        self.spool_refused_writes = Gauge(
            "converse_spool_refused_writes", "Writes refused: the outage spool was full", registry=r
        )

    def set_asr_model(self, name: str, compute_type: str) -> None:
        """Labels from fixed sets (media.models): a --model-path directory reads `custom`, never its path."""
        from media.models import CUSTOM, LABELS, compute_label

        self.asr_model.clear()
        self.asr_model.labels(name if name in LABELS else CUSTOM, compute_label(compute_type)).set(1)

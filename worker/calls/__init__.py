"""The call engine and what runs beside it: one TaskGroup per call, per-track pipelines, redaction context,
the live view, replay, drain budget and escalations."""

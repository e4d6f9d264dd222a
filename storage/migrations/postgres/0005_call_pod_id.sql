-- The pod (serve process, `--pod-id`) that took the call. A pod restarting marks its own calls still
-- `active` failed ("worker restarted"); `calls fail-stale` does it for a pod that is gone. NULL for
-- replays and for calls from before this column.

ALTER TABLE calls ADD COLUMN pod_id TEXT;
CREATE INDEX calls_active_by_pod ON calls (pod_id) WHERE ended_at IS NULL;

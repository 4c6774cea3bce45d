-- The run history, newest first (each run's lag comes from lag_runs.sql).
SELECT
  r.run_id, r.started_at, r.finished_at, r.status, r.mode, r.window_start, r.window_end,
  r.extracted, r.sent, r.accepted, r.filtered_total, r.rejected_total, r.filtered, r.rejected,
  r.data_map_version, r.duration_seconds, r.requests, r.retries, r.notebook_path, r.host, r.error
FROM ampkit_runs AS r
ORDER BY r.started_at DESC, r.run_id DESC
LIMIT @limit

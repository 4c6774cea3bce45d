-- The run history, newest first, with each run's lag: how far behind its clock the window it sent ended
-- (settle time included), i.e. how fresh Amplitude was once it finished.
SELECT
  r.run_id, r.started_at, r.finished_at, r.status, r.mode, r.window_start, r.window_end,
  r.extracted, r.sent, r.accepted, r.filtered_total, r.rejected_total, r.filtered, r.rejected,
  r.data_map_version, r.duration_seconds, r.requests, r.retries, r.notebook_path, r.host, r.error,
  DIV(UNIX_MICROS(r.started_at) - UNIX_MICROS(r.window_end), 1000000) AS lag_seconds
FROM ampkit_runs AS r
ORDER BY r.started_at DESC, r.run_id DESC
LIMIT @limit

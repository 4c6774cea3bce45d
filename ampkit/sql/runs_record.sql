-- A run that never took the lease (skipped_locked) or ended: one complete row.
INSERT INTO ampkit_runs (run_id, started_at, finished_at, status, mode, window_start, window_end,
  extracted, sent, accepted, filtered_total, rejected_total, filtered, rejected, data_map_version,
  duration_seconds, requests, retries, notebook_path, host, error)
VALUES (@run_id, @started_at, @finished_at, @status, @mode, @window_start, @window_end,
  @extracted, @sent, @accepted, @filtered_total, @rejected_total, @filtered, @rejected,
  @data_map_version, @duration_seconds, @requests, @retries, @notebook_path, @host, @error)

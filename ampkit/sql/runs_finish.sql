-- Replace the run's ledger row with its final state, atomically (a kill between the two
-- statements must not make the run vanish from the ledger).
BEGIN TRANSACTION;
DELETE FROM ampkit_runs WHERE run_id = @run_id;
INSERT INTO ampkit_runs (run_id, started_at, finished_at, status, mode, window_start, window_end,
  extracted, sent, accepted, filtered_total, rejected_total, filtered, rejected, data_map_version,
  duration_seconds, requests, retries, notebook_path, host, error)
VALUES (@run_id, @started_at, @finished_at, @status, @mode, @window_start, @window_end,
  @extracted, @sent, @accepted, @filtered_total, @rejected_total, @filtered, @rejected,
  @data_map_version, @duration_seconds, @requests, @retries, @notebook_path, @host, @error);
COMMIT TRANSACTION

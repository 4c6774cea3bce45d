-- A run's last job: its ledger row replaced by its final state (atomically: a kill between the two
-- statements must not make the run vanish from the ledger), working rows cleared, the lease given back. A run that never got the lease (skipped) records itself the same way; the rest
-- then changes nothing.
BEGIN TRANSACTION;
DELETE FROM ampkit_runs WHERE run_id = @run_id;
INSERT INTO ampkit_runs (run_id, started_at, finished_at, status, mode, window_start, window_end,
  extracted, sent, accepted, filtered_total, rejected_total, filtered, rejected, data_map_version,
  duration_seconds, requests, retries, notebook_path, host, error)
VALUES (@run_id, @started_at, @finished_at, @status, @mode, @window_start, @window_end,
  @extracted, @sent, @accepted, @filtered_total, @rejected_total, @filtered, @rejected,
  @data_map_version, @duration_seconds, @requests, @retries, @notebook_path, @host, @error);
COMMIT TRANSACTION;
-- The lease holder clears every run's working rows (a run killed after its last checkpoint left
-- its own); a skipped run clears only its own, which it never had.
DELETE FROM ampkit_pending
WHERE run_id = @run_id OR EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder);
DELETE FROM ampkit_run_rules
WHERE run_id = @run_id OR EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder);
DELETE FROM ampkit_rejects
WHERE run_id = @run_id OR EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder);
UPDATE ampkit_lease SET holder = CAST(NULL AS STRING), acquired_at = CAST(NULL AS TIMESTAMP), expires_at = CAST(NULL AS TIMESTAMP)
WHERE name = @name AND holder = @holder

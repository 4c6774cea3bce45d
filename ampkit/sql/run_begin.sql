-- A run's first job: take the sync lease, mark runs that never finished, open this run's ledger
-- row, and say who holds the lease, where the watermark stands, which schema the tables have and
-- which data map version is deployed (and whether this run's was approved).
-- The lease is one row per name, created unowned once and afterwards only taken, renewed and given
-- back by UPDATE. BigQuery applies UPDATEs of one table one at a time (a concurrent one is retried
-- on the state the first left, or fails), so of two runs starting together exactly one takes it.
-- An INSERT ... WHERE NOT EXISTS would not do: concurrent INSERTs never conflict, both would land.
-- Two racing first runs may both create the unowned row; the UPDATE takes every row of the name
-- at once, so they stay identical. See docs/BIGQUERY.md.
INSERT INTO ampkit_lease (name, holder, acquired_at, expires_at)
SELECT @name, CAST(NULL AS STRING), CAST(NULL AS TIMESTAMP), CAST(NULL AS TIMESTAMP)
FROM (SELECT 1 AS one) AS x
WHERE NOT EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name);
UPDATE ampkit_lease SET holder = @holder, acquired_at = @now, expires_at = @expires_at
WHERE name = @name AND (holder IS NULL OR expires_at IS NULL OR expires_at <= @now OR holder = @holder);
-- Only the run that holds the lease writes to the ledger here; a run that did not get it records
-- itself as skipped with run_finish.sql.
-- This run's own row is spared and written once: after an upgrade the last statement may fail on a
-- table this version added, and the run creates it and begins again (state.begin).
UPDATE ampkit_runs SET status = 'interrupted', error = 'the run ended without recording a result (killed or crashed)'
WHERE status = 'running' AND run_id <> @run_id
  AND EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder);
INSERT INTO ampkit_runs (run_id, started_at, status, mode, host, data_map_version, notebook_path)
SELECT @run_id, @started_at, 'running', @mode, @host, @data_map_version, @notebook_path
FROM (SELECT 1 AS one) AS x
WHERE EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name AND holder = @holder)
  AND NOT EXISTS (SELECT 1 FROM ampkit_runs WHERE run_id = @run_id);
SELECT DISTINCT l.holder, l.expires_at,
  (SELECT MAX(value) FROM ampkit_state WHERE key = 'watermark') AS watermark,
  (SELECT MAX(run_id) FROM ampkit_state WHERE key = 'schema') AS schema_version,
  (SELECT MAX(value) FROM ampkit_state WHERE key = 'outcomes_kept_from') AS kept_from,
  (SELECT MAX(run_id) FROM ampkit_state WHERE key = 'data_map') AS deployed_map,
  EXISTS (SELECT 1 FROM ampkit_approvals WHERE kind = 'data_map' AND subject = @data_map_version) AS map_approved
FROM ampkit_lease AS l
WHERE l.name = @name

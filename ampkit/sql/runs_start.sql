-- A run that never finished (killed, machine lost) is marked honestly before a new one starts,
-- and the dead letters of runs that never recorded their outcomes are dropped: the rows go
-- through the pipeline again and are dead-lettered again if they still must be.
BEGIN TRANSACTION;
UPDATE ampkit_runs SET status = 'interrupted', error = 'the run ended without recording a result (killed or crashed)'
WHERE status = 'running';
DELETE FROM ampkit_dead_letters AS l
WHERE l.run_id IN (SELECT run_id FROM ampkit_runs WHERE status IN ('interrupted', 'failed'))
  AND NOT EXISTS (SELECT 1 FROM ampkit_deliveries AS d WHERE d.run_id = l.run_id AND d.id = l.id);
INSERT INTO ampkit_runs (run_id, started_at, status, mode, host, data_map_version, notebook_path)
VALUES (@run_id, @started_at, 'running', @mode, @host, @data_map_version, @notebook_path);
COMMIT TRANSACTION

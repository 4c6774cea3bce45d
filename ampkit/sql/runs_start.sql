-- A run that never finished (killed, machine lost) is marked honestly before a new one starts.
UPDATE ampkit_runs SET status = 'interrupted', error = 'the run ended without recording a result (killed or crashed)'
WHERE status = 'running';
INSERT INTO ampkit_runs (run_id, started_at, status, mode, host, data_map_version, notebook_path)
VALUES (@run_id, @started_at, 'running', @mode, @host, @data_map_version, @notebook_path)

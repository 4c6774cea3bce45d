-- Runs that may have sent part of the open window and ended without recording it, beyond the dedup horizon.
SELECT COUNT(*) AS runs
FROM ampkit_runs
WHERE status IN ('interrupted', 'failed', 'running') AND started_at < @horizon AND window_end > @window_start

-- The loaded_at range of the dead letters a replay would send again (deadletter_forget.sql's bounds).
SELECT MIN(loaded_at) AS first_loaded, MAX(loaded_at) AS last_loaded
FROM ampkit_dead_letters
WHERE replayed_run_id IS NULL AND reason IN UNNEST(@reasons) AND created_at >= @since

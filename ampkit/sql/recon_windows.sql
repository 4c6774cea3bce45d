-- The windows of loaded_at the scheduled runs covered (not backfills, which cover event time),
-- ending after @since: where they leave a hole below the watermark, no run could take a row.
SELECT window_start, window_end
FROM ampkit_runs
WHERE status = 'ok' AND mode = 'sync' AND window_end >= @since AND window_end > window_start
ORDER BY window_start, window_end

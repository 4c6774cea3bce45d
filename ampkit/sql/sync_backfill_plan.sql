-- A backfill's plan: the staged rows of event time [@event_start, @event_end) that have no outcome
-- yet, per hour of loaded_at, with their estimated size (as sync_slices.sql estimates it). A row is
-- staged no earlier than its event time (it waits for its time), so only the partitions loaded
-- since @event_start are read; hours whose rows all have an outcome are left out, so ranges
-- already handled cost nothing more.
SELECT TIMESTAMP_TRUNC(a.loaded_at, HOUR) AS hour, COUNT(*) AS row_count,
  SUM(400 + COALESCE(LENGTH(a.public_argument), 0) + COALESCE(LENGTH(a.feature_flags), 0)
      + COALESCE(LENGTH(a.first_source_url), 0) + COALESCE(LENGTH(a.referrer), 0) + LENGTH(a.name)) AS text_bytes
FROM amplitude_events AS a
WHERE a.loaded_at >= @event_start AND a.loaded_at <= @window_end
  AND a.timestamp >= @event_start AND a.timestamp < @event_end
  AND NOT EXISTS (
    SELECT 1 FROM ampkit_deliveries AS d
    WHERE d.id = a.id AND d.loaded_at >= @event_start AND d.loaded_at <= @window_end)
  -- As sync_snapshot.sql: rows whose outcomes were rolled up are handled, replayed dead letters aside.
  AND (a.loaded_at >= @kept_from
       OR a.id IN (SELECT id FROM ampkit_dead_letters WHERE replayed_run_id IS NOT NULL))
GROUP BY 1
ORDER BY 1

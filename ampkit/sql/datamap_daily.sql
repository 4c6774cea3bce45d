-- Rows per day of event time (UTC), event and source staged in [@since, @until), with when each was
-- last seen: what `ampkit datamap diff` replays through two maps and `ampkit datamap suggest` weighs.
-- The maps' decisions are applied to these few thousand rows, never to the events one by one.
SELECT DATE(timestamp) AS day, name, source, COUNT(*) AS row_count, MAX(timestamp) AS last_seen
FROM amplitude_events
WHERE timestamp >= @since AND timestamp < @until
  -- A row is loaded after it happens, so this bound costs no row and lets BigQuery skip the
  -- load-time partitions before the range.
  AND loaded_at >= @since
GROUP BY day, name, source
ORDER BY day, name, source

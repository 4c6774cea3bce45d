-- How many staged rows a backfill of [@event_start, @event_end) would process (rows without an outcome).
SELECT COUNT(*) AS pending
FROM amplitude_events AS a
WHERE a.timestamp >= @event_start AND a.timestamp < @event_end AND a.loaded_at <= @window_end
  AND NOT EXISTS (SELECT 1 FROM ampkit_deliveries AS d WHERE d.id = a.id)

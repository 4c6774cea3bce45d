-- Amplitude's own rows (its export, loaded for this reconciliation) per 15-minute bucket of event
-- time, for the event types of the time-zone cross-check: re-bucketed into local hours at each
-- candidate offset (whole, half and quarter hours) and compared with Amplitude's Dashboard hourly totals.
SELECT TIMESTAMP_MICROS(DIV(UNIX_MICROS(x.event_time), 900000000) * 900000000) AS bucket, x.event_type AS name,
  COUNT(*) AS amplitude
FROM ampkit_amplitude_export AS x
WHERE x.recon_id = @recon_id AND x.event_time >= @start_ts AND x.event_time < @end_ts
  AND x.event_type IN UNNEST(@names)
GROUP BY 1, 2

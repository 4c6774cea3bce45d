-- Rows per (name, source) staged for Amplitude since @since: what the data map must decide about.
SELECT name, source, COUNT(*) AS row_count
FROM amplitude_events
WHERE timestamp >= @since AND timestamp < @until
GROUP BY name, source
ORDER BY row_count DESC

-- What a roll-up of row outcomes loaded in [@kept_from, @rollup_before) would take: per loaded day,
-- the staged rows and how many of them have no outcome yet (held by the data map, or never synced).
-- The roll-up stops at the first such day: a row without an outcome is only known by the absence of
-- one, which the row-level table alone can show. Reads those days' partitions only.
SELECT DATE(a.loaded_at) AS day, COUNT(*) AS staged, COUNTIF(d.id IS NULL) AS without_outcome
FROM amplitude_events AS a
LEFT JOIN (
  SELECT DISTINCT id FROM ampkit_deliveries
  WHERE loaded_at >= @kept_from AND loaded_at < @rollup_before
) AS d ON d.id = a.id
WHERE a.loaded_at >= @kept_from AND a.loaded_at < @rollup_before
GROUP BY 1
ORDER BY 1

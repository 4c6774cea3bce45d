-- What the runs handled per day of load, event and source, with the data map's decision and rule
-- then: the deployed map's side of `ampkit datamap diff` and of the hourly record's review of a new map.
SELECT DATE(loaded_hour) AS day, name, source, action, rule, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= @since AND loaded_hour < @until
GROUP BY day, name, source, action, rule
ORDER BY day, name, source, action, rule

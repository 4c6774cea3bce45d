-- The guardrail's history for one window (docs/GUARDRAIL.md): rows per loaded hour, event, source
-- and the data map's decision then, as earlier runs handled them, in the window's hours
-- [@hour_from, @hour_to) (week 0: what this hour's earlier runs sent) and in the same hours of each
-- of the last @weeks weeks. A branch per week, each bounded by its own range, so BigQuery reads a few
-- hourly partitions of each week and never the weeks between: the bytes do not grow with history.
SELECT 0 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= @hour_from AND loaded_hour < @hour_to AND @weeks >= 0
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 1 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 168 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 168 HOUR) AND @weeks >= 1
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 2 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 336 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 336 HOUR) AND @weeks >= 2
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 3 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 504 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 504 HOUR) AND @weeks >= 3
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 4 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 672 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 672 HOUR) AND @weeks >= 4
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 5 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 840 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 840 HOUR) AND @weeks >= 5
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 6 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 1008 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 1008 HOUR) AND @weeks >= 6
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 7 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 1176 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 1176 HOUR) AND @weeks >= 7
GROUP BY loaded_hour, name, source, action
UNION ALL
SELECT 8 AS week, loaded_hour, name, source, action, SUM(row_count) AS row_count
FROM ampkit_volumes
WHERE loaded_hour >= TIMESTAMP_SUB(@hour_from, INTERVAL 1344 HOUR) AND loaded_hour < TIMESTAMP_SUB(@hour_to, INTERVAL 1344 HOUR) AND @weeks >= 8
GROUP BY loaded_hour, name, source, action

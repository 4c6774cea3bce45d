-- Record an approval: a data map version reviewed with `ampkit datamap approve`, with the
-- reviewer, when, and what the review said it changes.
INSERT INTO ampkit_approvals (kind, subject, map_version, window_start, window_end, run_id, approved_by, approved_at, note)
SELECT 'data_map', @data_map_version, @data_map_version, CAST(NULL AS TIMESTAMP), CAST(NULL AS TIMESTAMP),
  CAST(NULL AS STRING), @approved_by, @now, @note
FROM (SELECT 1 AS one) AS x
WHERE NOT EXISTS (SELECT 1 FROM ampkit_approvals WHERE kind = 'data_map' AND subject = @data_map_version)

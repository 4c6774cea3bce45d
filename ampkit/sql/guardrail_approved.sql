-- Whether a data map version was approved (`ampkit datamap approve`).
SELECT COUNT(*) AS approvals
FROM ampkit_approvals
WHERE kind = 'data_map' AND subject = @data_map_version

-- Where the sync stands: the watermark, where row-level outcomes begin (outcomes_rollup.sql) and
-- the data map version the open window was last synced with (kept in run_id, see sync_finalize.sql).
SELECT MAX(IF(key = 'watermark', value, NULL)) AS watermark,
  MAX(IF(key = 'outcomes_kept_from', value, NULL)) AS kept_from,
  MAX(IF(key = 'data_map', run_id, NULL)) AS deployed_map
FROM ampkit_state
WHERE key IN ('watermark', 'outcomes_kept_from', 'data_map')

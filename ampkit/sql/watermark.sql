-- Where the sync stands: the watermark, and where row-level outcomes begin (outcomes_rollup.sql).
SELECT MAX(IF(key = 'watermark', value, NULL)) AS watermark,
  MAX(IF(key = 'outcomes_kept_from', value, NULL)) AS kept_from
FROM ampkit_state
WHERE key IN ('watermark', 'outcomes_kept_from')

-- Give the lease back (the row stays, unowned: the lease is only ever taken by UPDATE, see run_begin.sql).
UPDATE ampkit_lease SET holder = CAST(NULL AS STRING), acquired_at = CAST(NULL AS TIMESTAMP), expires_at = CAST(NULL AS TIMESTAMP)
WHERE name = @name AND holder = @holder

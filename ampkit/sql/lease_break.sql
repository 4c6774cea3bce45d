-- Free a lease whose holder is known dead (same host, process gone), so the next run needn't wait for expiry.
UPDATE ampkit_lease SET holder = CAST(NULL AS STRING), acquired_at = CAST(NULL AS TIMESTAMP), expires_at = CAST(NULL AS TIMESTAMP)
WHERE name = @name AND holder = @holder

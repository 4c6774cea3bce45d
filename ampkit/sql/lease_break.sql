-- Remove a lease whose holder is known dead (same host, process gone), so the next run needn't wait for expiry.
DELETE FROM ampkit_lease WHERE name = @name AND holder = @holder

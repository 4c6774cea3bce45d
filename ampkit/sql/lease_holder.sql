-- Who holds the sync lease now.
SELECT DISTINCT holder, expires_at FROM ampkit_lease WHERE name = @name

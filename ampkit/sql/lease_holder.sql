-- Who holds the sync lease now.
SELECT holder, expires_at FROM ampkit_lease WHERE name = @name

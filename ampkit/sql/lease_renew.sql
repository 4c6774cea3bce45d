-- Extend our lease; the last statement shows who holds it now (a stalled run may have lost it).
UPDATE ampkit_lease SET expires_at = @expires_at WHERE name = @name AND holder = @holder;
SELECT DISTINCT holder, expires_at FROM ampkit_lease WHERE name = @name

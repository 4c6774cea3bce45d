-- Take the sync lease unless a live holder has it; the last statement shows who holds it now.
BEGIN TRANSACTION;
DELETE FROM ampkit_lease WHERE name = @name AND (expires_at <= @now OR holder = @holder);
INSERT INTO ampkit_lease (name, holder, acquired_at, expires_at)
SELECT @name, @holder, @now, @expires_at
FROM (SELECT 1 AS one) AS x
WHERE NOT EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name);
COMMIT TRANSACTION;
SELECT holder, expires_at FROM ampkit_lease WHERE name = @name

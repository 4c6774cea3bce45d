DELETE FROM ampkit_lease WHERE name = @name AND holder = @holder

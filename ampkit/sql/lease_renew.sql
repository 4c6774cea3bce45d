UPDATE ampkit_lease SET expires_at = @expires_at WHERE name = @name AND holder = @holder

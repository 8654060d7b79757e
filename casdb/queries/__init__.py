"""casdb's operations, one module per area: users, keys, activity, quotas, ml_models, cells."""

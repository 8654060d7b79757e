"""casdb's alembic environment; installed as ``casdb._migrations`` so that wheels carry it."""

"""Alembic migrations of Keel's own tables (run by `keel.service.api.store.migrate`)."""

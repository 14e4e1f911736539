"""Alembic migrations of Keel's own tables (run by `keel.server.store.migrate`)."""

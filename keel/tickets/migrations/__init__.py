"""Alembic migrations of the help desk's tables (run by `keel.tickets.db.migrate`)."""

"""Alembic environment: migrations run on the connection `keel.tickets.db` hands in, with
their own version table (the service's migrations keep `keel_alembic_version`)."""

from __future__ import annotations

from alembic import context

from keel.tickets.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="helpdesk_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

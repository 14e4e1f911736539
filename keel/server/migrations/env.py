"""Alembic environment: migrations run on the connection `keel.server.store` hands in."""

from __future__ import annotations

from alembic import context

from keel.server.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="keel_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

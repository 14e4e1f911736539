"""Thread ids per tenant: threads are unique on (tenant, id) and carry a key of their own.

A thread's key names it in the checkpoints, the journal and `keel_runs` (see
`keel.server.store`). Every thread that exists when this runs keeps its id as its key, so
its checkpoints, journal rows and runs (which name it by that id) stay its own.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEY_LENGTH = 300
_COLUMNS = "thread_id, tenant_id, status, metadata, created_at, updated_at"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("keel_threads", sa.Column("thread_key", sa.String(KEY_LENGTH)))
        op.execute("UPDATE keel_threads SET thread_key = thread_id")
        op.alter_column("keel_threads", "thread_key", nullable=False)
        op.drop_constraint("keel_threads_pkey", "keel_threads", type_="primary")
        op.create_primary_key("keel_threads_pkey", "keel_threads", ["thread_id", "tenant_id"])
        op.alter_column(
            "keel_runs", "thread_id", type_=sa.String(KEY_LENGTH), existing_nullable=False
        )
    else:  # SQLite cannot change a primary key in place: copy into a new table
        op.create_table(
            "keel_threads_0004",
            sa.Column("thread_id", sa.String(128), primary_key=True),
            sa.Column("tenant_id", sa.String(128), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("metadata", sa.JSON, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("thread_key", sa.String(KEY_LENGTH), nullable=False),
        )
        op.execute(
            f"INSERT INTO keel_threads_0004 ({_COLUMNS}, thread_key) "
            f"SELECT {_COLUMNS}, thread_id FROM keel_threads"
        )
        op.drop_table("keel_threads")
        op.rename_table("keel_threads_0004", "keel_threads")
        op.create_index("ix_keel_threads_tenant", "keel_threads", ["tenant_id", "created_at"])
    op.create_index("ux_keel_threads_key", "keel_threads", ["thread_key"], unique=True)


def downgrade() -> None:
    """Back to one namespace of ids: refused once a thread is keyed other than by its id
    (its checkpoints would no longer be found)."""
    moved = op.get_bind().execute(
        sa.text("SELECT count(*) FROM keel_threads WHERE thread_key <> thread_id")
    )
    if moved.scalar():
        raise RuntimeError("threads of tenants other than 'default' exist: cannot go below 0004")
    op.drop_index("ux_keel_threads_key", "keel_threads")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("keel_threads_pkey", "keel_threads", type_="primary")
        op.create_primary_key("keel_threads_pkey", "keel_threads", ["thread_id"])
        op.drop_column("keel_threads", "thread_key")
        op.alter_column("keel_runs", "thread_id", type_=sa.String(128), existing_nullable=False)
    else:
        op.create_table(
            "keel_threads_0003",
            sa.Column("thread_id", sa.String(128), primary_key=True),
            sa.Column("tenant_id", sa.String(128), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("metadata", sa.JSON, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.execute(
            f"INSERT INTO keel_threads_0003 ({_COLUMNS}) SELECT {_COLUMNS} FROM keel_threads"
        )
        op.drop_table("keel_threads")
        op.rename_table("keel_threads_0003", "keel_threads")
        op.create_index("ix_keel_threads_tenant", "keel_threads", ["tenant_id", "created_at"])

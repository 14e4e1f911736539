"""Assistants: a tenant's configured graphs, and every version each has had.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _fields() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "keel_assistants",
        sa.Column("assistant_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        *_fields(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_keel_assistants_tenant", "keel_assistants", ["tenant_id", "created_at"])
    op.create_table(
        "keel_assistant_versions",
        sa.Column("assistant_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        *_fields(),
    )


def downgrade() -> None:
    op.drop_table("keel_assistant_versions")
    op.drop_table("keel_assistants")

"""The help desk: customers, staff, tickets, comments, refunds, articles and their search.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE helpdesk_articles_fts USING fts5("
    "title, body, content='helpdesk_articles', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER helpdesk_articles_ai AFTER INSERT ON helpdesk_articles BEGIN "
    "INSERT INTO helpdesk_articles_fts(rowid, title, body) VALUES (new.id, new.title, new.body); "
    "END",
    "CREATE TRIGGER helpdesk_articles_ad AFTER DELETE ON helpdesk_articles BEGIN "
    "INSERT INTO helpdesk_articles_fts(helpdesk_articles_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    "CREATE TRIGGER helpdesk_articles_au AFTER UPDATE ON helpdesk_articles BEGIN "
    "INSERT INTO helpdesk_articles_fts(helpdesk_articles_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO helpdesk_articles_fts(rowid, title, body) VALUES (new.id, new.title, new.body); "
    "END",
]
_POSTGRES_FTS = [
    "ALTER TABLE helpdesk_articles ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(body, '')), 'B')) STORED",
    "CREATE INDEX ix_helpdesk_articles_search ON helpdesk_articles USING gin (search)",
]


def upgrade() -> None:
    op.create_table(
        "helpdesk_customers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "helpdesk_staff",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("team", sa.String(64), nullable=False),
    )
    op.create_table(
        "helpdesk_tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "customer_id", sa.Integer, sa.ForeignKey("helpdesk_customers.id"), nullable=False
        ),
        sa.Column("order_id", sa.Integer, nullable=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(64), sa.ForeignKey("helpdesk_staff.name"), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_helpdesk_tickets_status", "helpdesk_tickets", ["status", "id"])
    op.create_index("ix_helpdesk_tickets_customer", "helpdesk_tickets", ["customer_id"])
    op.create_table(
        "helpdesk_comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("helpdesk_tickets.id"), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_helpdesk_comments_ticket", "helpdesk_comments", ["ticket_id", "id"])
    op.create_table(
        "helpdesk_refunds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("order_id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("helpdesk_tickets.id"), nullable=True),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_helpdesk_refunds_order", "helpdesk_refunds", ["order_id"])
    op.create_table(
        "helpdesk_articles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(128), nullable=False, unique=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "helpdesk_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS helpdesk_articles_fts")
    for table in (
        "helpdesk_meta",
        "helpdesk_articles",
        "helpdesk_refunds",
        "helpdesk_comments",
        "helpdesk_tickets",
        "helpdesk_staff",
        "helpdesk_customers",
    ):
        op.drop_table(table)

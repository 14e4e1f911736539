"""The help desk's tables, as queries see them.

The schema is owned by the Alembic migration beside this module (`migrations/`); these
`Table` objects describe it for queries. Names carry a `helpdesk_` prefix so the tables can
share a Postgres database with others. Money is kept in integer cents. The article search
index is not described here: SQLite keeps it in the FTS5 table `helpdesk_articles_fts`,
Postgres in the generated `tsvector` column `search` (see `keel.tickets.search`).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, MetaData, String, Table, Text

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "articles",
    "comments",
    "customers",
    "meta",
    "metadata",
    "refunds",
    "staff",
    "tickets",
]

metadata = MetaData()

STATUSES = ("open", "pending", "solved", "closed")
"""A ticket's life: `open` (needs us), `pending` (waits for the customer), `solved`,
`closed` (final)."""
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("pending", "solved"),
    "pending": ("open", "solved"),
    "solved": ("open", "closed"),
    "closed": (),
}
"""Which status each status may move to."""

customers = Table(
    "helpdesk_customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # the shop's customer id
    Column("email", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("plan", String(32), nullable=False),
    Column("created_at", String(32), nullable=False),
)

staff = Table(
    "helpdesk_staff",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("team", String(64), nullable=False),
)

tickets = Table(
    "helpdesk_tickets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("helpdesk_customers.id"), nullable=False),
    Column("order_id", Integer, nullable=True),  # the shop's order the ticket is about
    Column("subject", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("assignee", String(64), ForeignKey("helpdesk_staff.name"), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

comments = Table(
    "helpdesk_comments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ticket_id", Integer, ForeignKey("helpdesk_tickets.id"), nullable=False),
    Column("author", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("public", Boolean, nullable=False),
    Column("idempotency_key", String(255), nullable=True, unique=True),
    Column("created_at", String(32), nullable=False),
)

refunds = Table(
    "helpdesk_refunds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("ticket_id", Integer, ForeignKey("helpdesk_tickets.id"), nullable=True),
    Column("amount_cents", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
)

articles = Table(
    "helpdesk_articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(128), nullable=False, unique=True),
    Column("title", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_at", String(32), nullable=False),
)

meta = Table(
    "helpdesk_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Bookkeeping: which shop data the sample was generated from (`sample_of`)."""

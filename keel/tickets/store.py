"""The help desk's reads and writes, with the rules a model must be told about.

Every refusal is a `ToolInputError` whose message says what was wrong and what to do
instead (the model reads it). Writes that are not naturally idempotent (a comment, a refund)
take the caller's idempotency key and store it in a unique column: a second write with the
same key inserts nothing and returns the first one's row, so even a call the journal lost
track of cannot happen twice.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from keel.errors import ToolInputError
from keel.tickets.db import writing
from keel.tickets.tables import (
    STATUSES,
    TRANSITIONS,
    articles,
    comments,
    customers,
    refunds,
    staff,
    tickets,
)

__all__ = [
    "add_comment",
    "assign",
    "customer_orders",
    "find_comment",
    "find_refund",
    "get_article",
    "get_ticket",
    "order_facts",
    "refund_order",
    "search_articles",
    "search_tickets",
    "set_status",
]

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "you",
        "your",
    ]
)
"""Words too common to search for (Postgres' English dictionary drops them too)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cents(amount: float) -> int:
    return round(amount * 100)


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def _ticket_row(conn: Connection, ticket_id: int) -> Any:
    row = conn.execute(select(tickets).where(tickets.c.id == ticket_id)).first()
    if row is None:
        last = conn.execute(select(func.max(tickets.c.id))).scalar() or 0
        raise ToolInputError(
            f"there is no ticket {ticket_id}; ticket ids run from 1 to {last}. "
            "Use search_tickets to find the right one."
        )
    return row


# ---------------------------------------------------------------------------------- reads
def search_tickets(
    engine: Engine,
    *,
    text_query: str | None,
    status: str | None,
    customer_email: str | None,
    assignee: str | None,
    limit: int,
) -> dict[str, Any]:
    """Tickets matching every filter given, newest id first, at most `limit`."""
    if status is not None and status not in STATUSES:
        raise ToolInputError(f"unknown status '{status}'; statuses are {list(STATUSES)}")
    query = select(
        tickets.c.id,
        tickets.c.subject,
        tickets.c.status,
        tickets.c.priority,
        tickets.c.assignee,
        tickets.c.order_id,
        customers.c.email.label("customer_email"),
    ).join(customers, customers.c.id == tickets.c.customer_id)
    if status is not None:
        query = query.where(tickets.c.status == status)
    if customer_email:
        query = query.where(func.lower(customers.c.email) == customer_email.strip().lower())
    if assignee:
        query = query.where(tickets.c.assignee == assignee)
    for word in _WORD.findall(text_query or "")[:8]:
        pattern = f"%{word.lower()}%"
        query = query.where(
            or_(
                func.lower(tickets.c.subject).like(pattern),
                func.lower(tickets.c.body).like(pattern),
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(tickets.c.id.desc()).limit(limit + 1)).all()
    return {
        "tickets": [dict(r._mapping) for r in rows[:limit]],
        "more": len(rows) > limit,
    }


def get_ticket(engine: Engine, shop: Engine, ticket_id: int, *, max_items: int) -> dict[str, Any]:
    """A ticket with its customer, its latest comments and the customer's latest orders."""
    with engine.connect() as conn:
        ticket = _ticket_row(conn, ticket_id)
        customer = conn.execute(
            select(customers.c.id, customers.c.name, customers.c.email, customers.c.plan).where(
                customers.c.id == ticket.customer_id
            )
        ).first()
        notes = conn.execute(
            select(comments.c.id, comments.c.author, comments.c.body, comments.c.public)
            .where(comments.c.ticket_id == ticket_id)
            .order_by(comments.c.id.desc())
            .limit(max_items)
        ).all()
    orders = customer_orders(engine, shop, ticket.customer_id, limit=max_items)
    return {
        "ticket": dict(ticket._mapping),
        "customer": dict(customer._mapping) if customer else None,
        "comments": [dict(c._mapping) for c in reversed(notes)],
        "orders": orders,
    }


def _refunded_cents(conn: Connection, order_ids: list[int]) -> dict[int, int]:
    if not order_ids:
        return {}
    rows = conn.execute(
        select(refunds.c.order_id, func.sum(refunds.c.amount_cents))
        .where(refunds.c.order_id.in_(order_ids))
        .group_by(refunds.c.order_id)
    ).all()
    return {int(r[0]): int(r[1]) for r in rows}


_ORDER_SQL = (
    "SELECT o.id, o.customer_id, o.order_date, o.status, "
    "ROUND(SUM(oi.quantity * oi.unit_price), 2) AS total "
    "FROM orders o JOIN order_items oi ON oi.order_id = o.id "
)


def customer_orders(
    engine: Engine, shop: Engine, customer_id: int, *, limit: int
) -> list[dict[str, Any]]:
    """The customer's latest orders in the shop, with what the help desk refunded."""
    with shop.connect() as s:
        rows = s.execute(
            text(
                _ORDER_SQL + "WHERE o.customer_id = :c "
                "GROUP BY o.id, o.customer_id, o.order_date, o.status "
                "ORDER BY o.order_date DESC, o.id DESC LIMIT :n"
            ),
            {"c": customer_id, "n": limit},
        ).all()
    with engine.connect() as conn:
        done = _refunded_cents(conn, [int(r.id) for r in rows])
    return [
        {
            "order_id": int(r.id),
            "date": str(r.order_date),
            "status": r.status,
            "total": float(r.total),
            "refunded": _money(done.get(int(r.id), 0)),
        }
        for r in rows
    ]


def order_facts(shop: Engine, order_id: int) -> Any:
    """The shop's order (id, customer_id, order_date, status, total), or a clear refusal."""
    with shop.connect() as s:
        row = s.execute(
            text(
                _ORDER_SQL + "WHERE o.id = :o GROUP BY o.id, o.customer_id, o.order_date, o.status"
            ),
            {"o": order_id},
        ).first()
    if row is None:
        raise ToolInputError(
            f"there is no order {order_id} in the shop; read the ticket to see the customer's "
            "orders."
        )
    return row


def search_articles(engine: Engine, query: str, *, limit: int) -> list[dict[str, Any]]:
    """Help-centre articles matching any word of `query`, best first (full-text search:
    SQLite FTS5 with BM25, Postgres `tsvector` with `ts_rank`)."""
    words = [w for w in (w.lower() for w in _WORD.findall(query)) if w not in _STOP][:16]
    if not words:
        raise ToolInputError(
            "search_articles needs at least one word to search for (common words like 'the' "
            "are ignored)"
        )
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            match = " OR ".join(f'"{w}"' for w in words)
            rows = conn.execute(
                text(
                    "SELECT a.id, a.slug, a.title, "
                    "snippet(helpdesk_articles_fts, 1, '', '', '…', 16) AS excerpt "
                    "FROM helpdesk_articles_fts JOIN helpdesk_articles a "
                    "ON a.id = helpdesk_articles_fts.rowid "
                    "WHERE helpdesk_articles_fts MATCH :q "
                    "ORDER BY bm25(helpdesk_articles_fts, 3.0, 1.0), a.id LIMIT :n"
                ),
                {"q": match, "n": limit},
            ).all()
        else:
            rows = conn.execute(
                text(
                    "SELECT a.id, a.slug, a.title, ts_headline('english', a.body, q, "
                    '\'StartSel="",StopSel="",MaxWords=16,MinWords=8\') AS excerpt '
                    "FROM helpdesk_articles a, to_tsquery('english', :q) q "
                    "WHERE a.search @@ q ORDER BY ts_rank(a.search, q) DESC, a.id LIMIT :n"
                ),
                {"q": " | ".join(words), "n": limit},
            ).all()
    return [dict(r._mapping) for r in rows]


def get_article(engine: Engine, article: str) -> dict[str, Any]:
    """One article by id or slug."""
    query = select(articles.c.id, articles.c.slug, articles.c.title, articles.c.body)
    if article.strip().isdigit():
        query = query.where(articles.c.id == int(article))
    else:
        query = query.where(articles.c.slug == article.strip())
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise ToolInputError(
            f"there is no article '{article}'; use search_articles and pass an id or slug it "
            "returns."
        )
    return dict(row._mapping)


# ---------------------------------------------------------------------------------- writes
def _insert_once(conn: Connection, table: Any, values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING, in either dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def find_comment(engine: Engine, key: str) -> dict[str, Any] | None:
    """The comment written under idempotency key `key`, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(comments).where(comments.c.idempotency_key == key)).first()
    return dict(row._mapping) if row else None


def add_comment(
    engine: Engine, ticket_id: int, body: str, *, public: bool, author: str, key: str
) -> dict[str, Any]:
    """Add a comment once per `key` (the same key returns the comment already written)."""
    if not body.strip():
        raise ToolInputError("a comment needs a body (the text to write)")
    with writing(engine).begin() as conn:
        _ticket_row(conn, ticket_id)
        _insert_once(
            conn,
            comments,
            {
                "ticket_id": ticket_id,
                "author": author,
                "body": body,
                "public": public,
                "idempotency_key": key,
                "created_at": _now(),
            },
        )
        row = conn.execute(select(comments).where(comments.c.idempotency_key == key)).one()
    if row.ticket_id != ticket_id or row.body != body:
        raise ToolInputError(f"idempotency key {key} was already used for another comment")
    return dict(row._mapping)


def assign(engine: Engine, ticket_id: int, assignee: str) -> dict[str, Any]:
    """Give the ticket to a staff member (repeating it changes nothing)."""
    with writing(engine).begin() as conn:
        ticket = _ticket_row(conn, ticket_id)
        names = list(conn.execute(select(staff.c.name).order_by(staff.c.name)).scalars())
        if assignee not in names:
            raise ToolInputError(f"unknown assignee '{assignee}'; staff are {names}")
        if ticket.status == "closed":
            raise ToolInputError(f"ticket {ticket_id} is closed; it cannot be reassigned")
        conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id)
            .values(assignee=assignee, updated_at=_now())
        )
    return {"ticket_id": ticket_id, "assignee": assignee, "previous": ticket.assignee}


def set_status(engine: Engine, ticket_id: int, status: str) -> dict[str, Any]:
    """Move the ticket to `status` along the allowed transitions (the same status: no-op)."""
    if status not in STATUSES:
        raise ToolInputError(f"unknown status '{status}'; statuses are {list(STATUSES)}")
    with writing(engine).begin() as conn:
        ticket = _ticket_row(conn, ticket_id)
        if ticket.status == status:
            return {"ticket_id": ticket_id, "status": status, "previous": status}
        allowed = TRANSITIONS[ticket.status]
        if status not in allowed:
            raise ToolInputError(
                f"ticket {ticket_id} is '{ticket.status}' and cannot become '{status}'; from "
                f"'{ticket.status}' it can become {list(allowed) or 'nothing (final)'}"
            )
        conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id)
            .values(status=status, updated_at=_now())
        )
    return {"ticket_id": ticket_id, "status": status, "previous": ticket.status}


def find_refund(engine: Engine, key: str) -> dict[str, Any] | None:
    """The refund issued under idempotency key `key`, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(refunds).where(refunds.c.idempotency_key == key)).first()
    return _refund_view(row) if row else None


def _refund_view(row: Any) -> dict[str, Any]:
    return {
        "refund_id": row.id,
        "order_id": row.order_id,
        "ticket_id": row.ticket_id,
        "amount": _money(row.amount_cents),
        "reason": row.reason,
    }


def refund_order(
    engine: Engine,
    shop: Engine,
    *,
    order_id: int,
    amount: float,
    reason: str,
    ticket_id: int | None,
    key: str,
    limit: float | None,
) -> dict[str, Any]:
    """Refund `amount` of a completed order once per `key`.

    Refused: an unknown order or ticket, a ticket about another customer, an order that
    was not charged (cancelled, pending) or that the shop already refunded, an amount of
    zero or above what is left to refund, and (with `limit`) an amount above `limit`.
    """
    cents = _cents(amount)
    if cents <= 0:
        raise ToolInputError("the refund amount must be positive (in dollars, e.g. 42.50)")
    existing = find_refund(engine, key)
    if existing is not None:
        return {**existing, "already_done": True}
    order = order_facts(shop, order_id)
    if order.status in ("cancelled", "pending"):
        raise ToolInputError(
            f"order {order_id} is {order.status}: the customer was not charged, so there is "
            "nothing to refund"
        )
    if order.status == "refunded":
        raise ToolInputError(f"order {order_id} was already refunded in full by the shop")
    with writing(engine).begin() as conn:
        if conn.dialect.name == "postgresql":  # one refund decision per order at a time
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"),
                {"k": zlib.crc32(f"refund:{order_id}".encode())},
            )
        if ticket_id is not None:
            ticket = _ticket_row(conn, ticket_id)
            if ticket.customer_id != order.customer_id:
                raise ToolInputError(
                    f"order {order_id} belongs to customer {order.customer_id}, not to the "
                    f"customer of ticket {ticket_id} ({ticket.customer_id})"
                )
        done = _refunded_cents(conn, [order_id]).get(order_id, 0)
        left = _cents(float(order.total)) - done
        if left <= 0:
            raise ToolInputError(
                f"order {order_id} was already refunded in full (${_money(done):,.2f})"
            )
        if cents > left:
            raise ToolInputError(
                f"${_money(cents):,.2f} is more than is left to refund on order {order_id}: "
                f"its total is ${float(order.total):,.2f}, ${_money(done):,.2f} already refunded, "
                f"so at most ${_money(left):,.2f}"
            )
        if limit is not None and cents > _cents(limit):  # checked last: asked only when valid
            raise ToolInputError(
                f"refunds above ${limit:,.2f} need a human's approval: call refund_order_large "
                "with the same arguments"
            )
        _insert_once(
            conn,
            refunds,
            {
                "order_id": order_id,
                "ticket_id": ticket_id,
                "amount_cents": cents,
                "reason": reason,
                "idempotency_key": key,
                "created_at": _now(),
            },
        )
        row = conn.execute(select(refunds).where(refunds.c.idempotency_key == key)).one()
    return {**_refund_view(row), "order_total": float(order.total)}

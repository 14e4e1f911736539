"""A deterministic sample help desk, linked to the shop's customers and orders.

`seed_sample(conn, shop)` fills empty help-desk tables from the shop database `shop` (the
sample sales database, `keel.tools.sample_db`): every shop customer becomes a help-desk
customer (same id and email), four staff members, twelve help-centre articles and
`TICKETS` tickets about the customers' real orders, some with comments. The same shop data
and `seed` give the same rows.

Tickets with a fixed story, so tasks and tests can name them:

- `DOUBLE_CHARGE` (42): charged twice for a completed order whose total is below the default
  approval threshold — the headline task refunds the duplicate charge without a human.
- `LARGE_DOUBLE_CHARGE` (43): the same for an order above it (a human approves the refund).
- `ALREADY_REFUNDED` (44): a refund asked for an order the shop already refunded.
- `CANCELLED_ORDER` (45): a refund asked for a cancelled order (nothing was charged).

This module offers no way to compute the answers (order totals, refundable amounts): tests
compute them independently from the shop database.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, insert, text

from keel.tickets.tables import articles, comments, customers, meta, staff, tickets

__all__ = [
    "ALREADY_REFUNDED",
    "CANCELLED_ORDER",
    "DOUBLE_CHARGE",
    "LARGE_DOUBLE_CHARGE",
    "SEED",
    "STAFF",
    "TICKETS",
    "seed_sample",
    "shop_stamp",
]

SEED = 11
TICKETS = 60
DOUBLE_CHARGE = 42
LARGE_DOUBLE_CHARGE = 43
ALREADY_REFUNDED = 44
CANCELLED_ORDER = 45
STAFF = (("maya", "billing"), ("omar", "billing"), ("lena", "shipping"), ("tomas", "accounts"))

ARTICLES: tuple[tuple[str, str, str], ...] = (
    (
        "duplicate-charges",
        "Charged twice for one order",
        "A duplicate charge happens when a payment is retried after a timeout. The second "
        "charge is refunded in full to the original payment method; the refund shows on the "
        "statement within 5 to 10 business days. Refunds above the approval threshold are "
        "checked by a billing lead first.",
    ),
    (
        "refund-policy",
        "Refund policy",
        "Completed orders can be refunded in full or in part within 90 days. The total "
        "refunded can never exceed what was charged for the order. Cancelled orders were "
        "never charged and need no refund. Refunds go back to the original payment method.",
    ),
    (
        "refund-timing",
        "When will I see my refund?",
        "Card refunds take 5 to 10 business days to appear; bank transfers up to 14 days. "
        "We send an email with the refund reference as soon as it is issued.",
    ),
    (
        "shipping-times",
        "Shipping times and tracking",
        "Orders ship within 2 business days. Standard delivery takes 3 to 7 days; express 1 to "
        "2 days. The tracking link is in the shipping confirmation email.",
    ),
    (
        "late-delivery",
        "My order is late",
        "If tracking shows no movement for 5 days, we open an investigation with the carrier "
        "and ship a replacement or refund the order once the parcel is declared lost.",
    ),
    (
        "returns",
        "Returning an item",
        "Unused items can be returned within 30 days. Start a return from the order page; a "
        "prepaid label is emailed. The refund is issued when the parcel reaches the warehouse.",
    ),
    (
        "wrong-item",
        "I received the wrong item",
        "Send a photo of the item and its label. We ship the right item at once and email a "
        "return label for the wrong one; you are not charged again.",
    ),
    (
        "cancel-order",
        "Cancelling an order",
        "Pending orders can be cancelled from the order page until they ship. A cancelled "
        "order is never charged; an authorisation hold disappears within a few days.",
    ),
    (
        "invoices",
        "Invoices and receipts",
        "Every completed order has a PDF invoice on the order page. Company details and VAT "
        "numbers can be added before the order is placed.",
    ),
    (
        "password-reset",
        "Resetting your password",
        "Use 'Forgot password' on the sign-in page; the reset link is valid for one hour. "
        "Accounts are locked for 15 minutes after five failed attempts.",
    ),
    (
        "payment-methods",
        "Payment methods",
        "We accept cards, PayPal and bank transfer. A payment that times out may be retried "
        "by your bank: check for a duplicate charge before paying again.",
    ),
    (
        "warranty",
        "Warranty claims",
        "Hardware carries a two-year warranty. Describe the fault and attach the invoice; we "
        "repair or replace the item, or refund it when neither is possible.",
    ),
)

_ROUTINE = (
    ("Where is my order {order}?", "Order {order} has not arrived yet. Can you check?", "lena"),
    ("Wrong item in order {order}", "I received something I did not order in {order}.", "lena"),
    ("Invoice for order {order}", "Please send me the invoice for order {order}.", "tomas"),
    ("Cannot sign in", "The password reset link says it expired.", "tomas"),
    ("Return for order {order}", "I would like to return an item from order {order}.", "lena"),
    ("Question about a charge", "I see a charge I do not recognise for order {order}.", "maya"),
)
_REPLIES = (
    "Thanks for reaching out, we are looking into it.",
    "Could you send a photo of the package label?",
    "We have forwarded this to the right team.",
)


def seed_sample(conn: Connection, shop: Connection, *, seed: int = SEED) -> str:
    """Fill the (empty) help-desk tables from the shop's data; returns the shop's stamp."""
    rng = random.Random(seed)
    stamp = shop_stamp(shop)
    today = date.fromisoformat(stamp) if _is_date(stamp) else date(2026, 1, 1)
    shop_customers = shop.execute(
        text("SELECT id, name, email, created_at FROM customers ORDER BY id")
    ).all()
    orders = shop.execute(
        text(
            "SELECT o.id, o.customer_id, o.order_date, o.status, "
            "ROUND(SUM(oi.quantity * oi.unit_price), 2) AS total "
            "FROM orders o JOIN order_items oi ON oi.order_id = o.id "
            "GROUP BY o.id, o.customer_id, o.order_date, o.status ORDER BY o.id"
        )
    ).all()
    conn.execute(
        insert(customers),
        [
            {
                "id": c.id,
                "email": c.email,
                "name": c.name,
                "plan": rng.choices(("standard", "plus", "business"), (70, 20, 10))[0],
                "created_at": str(c.created_at),
            }
            for c in shop_customers
        ],
    )
    conn.execute(insert(staff), [{"name": n, "team": t} for n, t in STAFF])
    conn.execute(
        insert(articles),
        [
            {"id": i, "slug": s, "title": t, "body": b, "updated_at": today.isoformat()}
            for i, (s, t, b) in enumerate(ARTICLES, start=1)
        ],
    )
    recent = [o for o in orders if (today - date.fromisoformat(str(o.order_date))).days <= 60]
    fixed = _fixed_stories(rng, recent or list(orders))
    rows: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for ticket_id in range(1, TICKETS + 1):
        created = today - timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 23))
        if ticket_id in fixed:
            order, subject, body, status, assignee = fixed[ticket_id]
            priority = "high"
        else:
            order = rng.choice(recent or orders)
            subject_t, body_t, assignee = rng.choice(_ROUTINE)
            subject, body = subject_t.format(order=order.id), body_t.format(order=order.id)
            status = rng.choices(("open", "pending", "solved", "closed"), (40, 20, 25, 15))[0]
            priority = rng.choice(("low", "normal", "normal", "high"))
            assignee = assignee if rng.random() < 0.6 else None
        rows.append(
            {
                "id": ticket_id,
                "customer_id": order.customer_id,
                "order_id": order.id,
                "subject": subject,
                "body": body,
                "status": status,
                "priority": priority,
                "assignee": assignee,
                "created_at": created.isoformat(),
                "updated_at": created.isoformat(),
            }
        )
        if ticket_id not in fixed and status != "open":
            notes.append(
                {
                    "ticket_id": ticket_id,
                    "author": assignee or "maya",
                    "body": rng.choice(_REPLIES),
                    "public": True,
                    "idempotency_key": None,
                    "created_at": (created + timedelta(hours=2)).isoformat(),
                }
            )
    conn.execute(insert(tickets), rows)
    if notes:
        conn.execute(insert(comments), notes)
    conn.execute(insert(meta), [{"key": "sample_of", "value": f"{stamp}/seed={seed}"}])
    return stamp


def _fixed_stories(rng: random.Random, orders: list[Any]) -> dict[int, tuple[Any, ...]]:
    completed = [o for o in orders if o.status == "completed"]
    small = [o for o in completed if 20 <= float(o.total) <= 95]
    large = [o for o in completed if float(o.total) >= 150]
    refunded = [o for o in orders if o.status == "refunded"]
    cancelled = [o for o in orders if o.status == "cancelled"]
    picked: dict[int, tuple[Any, ...]] = {}
    for ticket_id, pool in (
        (DOUBLE_CHARGE, small),
        (LARGE_DOUBLE_CHARGE, large),
        (ALREADY_REFUNDED, refunded),
        (CANCELLED_ORDER, cancelled),
    ):
        if not pool:
            continue
        order = rng.choice(pool)
        if ticket_id in (DOUBLE_CHARGE, LARGE_DOUBLE_CHARGE):
            story = (
                f"Charged twice for order {order.id}",
                f"My card was charged twice for order {order.id}. Please refund the "
                "duplicate charge.",
            )
        else:
            story = (
                f"Refund for order {order.id}",
                f"Please refund order {order.id}, I no longer want it.",
            )
        picked[ticket_id] = (order, *story, "open", "maya")
    return picked


def shop_stamp(shop: Connection) -> str:
    """The shop data's identity: the sample's `generated_on`, else 'external'."""
    try:
        row = shop.execute(text("SELECT value FROM meta WHERE key = 'generated_on'")).first()
    except Exception:
        shop.rollback()
        return "external"
    return str(row[0]) if row else "external"


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True

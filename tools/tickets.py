"""The help-desk tools of the `ticket_desk` agent (`keel.tools.tickets`).

Reads: `search_tickets`, `read_ticket` (with comments and the customer's shop orders),
`search_articles` (full-text search of the help centre), `read_article`. Writes:
`add_comment`, `assign_ticket`, `set_ticket_status`, `refund_order`, `refund_order_large`.

- **Exactly once**: comments and refunds are not idempotent, so they go through the
  idempotency journal; each also stores `ToolContext.idempotency_key` in a unique column,
  so a repeated write (a journal miss, a re-run after a crash) inserts nothing and returns
  the first row. That is also why their `reconcile` hook can answer "not done, run again".
  Assigning and changing status set a value: repeating them is harmless (`idempotent`).
- **Approval above a threshold**: approval in Keel is per tool, so refunds are two tools
  over one write. `refund_order` refunds up to `KEEL_TICKETS__REFUND_APPROVAL_USD` and
  refuses more, naming `refund_order_large`, whose every call waits for a human (approve,
  edit the amount, or reject). The threshold is enforced by the tool, not by the prompt.
- **Bounded**: at most `KEEL_TICKETS__MAX_ROWS` rows and `…__MAX_RESULT_BYTES` characters
  per result (lists are cut from the end, and say so).
- **Errors**: bad input is a `ToolInputError` saying what to do instead; the database
  being unreachable is a `ToolTransientError` (retried).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from keel.errors import ToolTransientError
from keel.tickets import store
from keel.tickets.db import open_helpdesk, shop_engine
from keel.tools.registry import Reconciled, Tool, ToolContext, tool
from keel.tools.sample_db import ensure_sample_db

__all__ = [
    "TICKET_TOOLS",
    "add_comment",
    "assign_ticket",
    "read_article",
    "read_ticket",
    "refund_order",
    "refund_order_large",
    "search_articles",
    "search_tickets",
    "set_ticket_status",
]

T = TypeVar("T")
AUTHOR = "ticket_desk"
"""The author of the comments the agent writes."""
MAX_ITEMS = 10
"""Comments and orders shown with one ticket at most."""
Status = Literal["open", "pending", "solved", "closed"]


def _shop_url(ctx: ToolContext) -> str:
    url = ctx.settings.database_url
    return url if url is not None else f"sqlite:///{ensure_sample_db(ctx.settings.home)}"


@contextmanager
def _backend() -> Iterator[None]:
    """A database that cannot be reached is transient (the call is retried), not the
    model's fault."""
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise ToolTransientError(f"the help desk database is unavailable: {cause}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise ToolTransientError(f"the help desk database connection dropped: {exc}") from exc
        raise


def _engines(ctx: ToolContext) -> tuple[Engine, Engine]:
    shop = _shop_url(ctx)
    return open_helpdesk(ctx.settings, shop), shop_engine(shop, ctx.settings.tickets.timeout_s)


def _call(ctx: ToolContext, work: Callable[[Engine, Engine], T]) -> T:
    with _backend():
        helpdesk, shop = _engines(ctx)
        return work(helpdesk, shop)


def bounded(data: dict[str, Any], max_chars: int) -> str:
    """`data` as JSON of at most `max_chars`: the longest list loses items from its end
    (and `cut` says how many) until it fits; long strings are shortened last."""
    text = json.dumps(data, default=str)
    cut = 0
    while len(text) > max_chars:
        lists = [k for k, v in data.items() if isinstance(v, list) and v]
        if not lists:
            break
        longest = max(lists, key=lambda k: len(json.dumps(data[k], default=str)))
        data = {**data, longest: data[longest][:-1]}
        cut += 1
        data["cut"] = f"{cut} item(s) left out to stay under {max_chars} characters"
        text = json.dumps(data, default=str)
    if len(text) > max_chars:
        text = text[: max_chars - 40] + f"…[cut at {max_chars} characters]"
    return text


def _limit(ctx: ToolContext) -> int:
    return ctx.settings.tickets.max_rows


def _out(ctx: ToolContext, data: dict[str, Any]) -> str:
    return bounded(data, ctx.settings.tickets.max_result_bytes)


def _rerun_is_safe(key: str) -> Reconciled:
    """A write keyed by its idempotency key can always run again: a second run inserts
    nothing and returns the first row."""
    return Reconciled.not_done()


TicketId = Annotated[int, Field(ge=1, description="The ticket's number")]
OrderId = Annotated[int, Field(ge=1, description="The shop's order id (read_ticket lists them)")]


@tool(idempotent=True)
def search_tickets(
    ctx: ToolContext,
    text: Annotated[
        str | None, Field(max_length=200, description="Words in the subject or body")
    ] = None,
    status: Status | None = None,
    customer_email: Annotated[str | None, Field(max_length=255)] = None,
    assignee: Annotated[str | None, Field(max_length=64)] = None,
) -> str:
    """Find help-desk tickets by words, status, customer email or assignee (newest first)."""
    found = _call(
        ctx,
        lambda h, _: store.search_tickets(
            h,
            text_query=text,
            status=status,
            customer_email=customer_email,
            assignee=assignee,
            limit=_limit(ctx),
        ),
    )
    return _out(ctx, found)


@tool(idempotent=True)
def read_ticket(ticket_id: TicketId, ctx: ToolContext) -> str:
    """Read a ticket: its text, status, assignee, comments, customer and the customer's latest
    orders (total, status and amount already refunded)."""
    found = _call(
        ctx, lambda h, s: store.get_ticket(h, s, ticket_id, max_items=min(MAX_ITEMS, _limit(ctx)))
    )
    return _out(ctx, found)


@tool(idempotent=True)
def search_articles(
    query: Annotated[str, Field(min_length=1, max_length=300, description="Words to look for")],
    ctx: ToolContext,
) -> str:
    """Search the help-centre articles (full-text, best match first) for policies and
    answers to give customers."""
    found = _call(ctx, lambda h, _: store.search_articles(h, query, limit=_limit(ctx)))
    return _out(ctx, {"articles": found})


@tool(idempotent=True)
def read_article(
    article: Annotated[str, Field(min_length=1, max_length=128, description="Id or slug")],
    ctx: ToolContext,
) -> str:
    """Read one help-centre article by the id or slug search_articles returned."""
    return _out(ctx, _call(ctx, lambda h, _: store.get_article(h, article)))


@tool(reconcile=_rerun_is_safe)
def add_comment(
    ticket_id: TicketId,
    body: Annotated[str, Field(min_length=1, max_length=4000, description="The text")],
    ctx: ToolContext,
    public: Annotated[bool, Field(description="True: the customer sees it")] = True,
) -> str:
    """Add a comment to a ticket; a public one is sent to the customer."""
    key = ctx.idempotency_key
    row = _call(
        ctx,
        lambda h, _: store.add_comment(h, ticket_id, body, public=public, author=AUTHOR, key=key),
    )
    return _out(ctx, {"comment_id": row["id"], "ticket_id": ticket_id, "public": row["public"]})


@tool(idempotent=True)
def assign_ticket(
    ticket_id: TicketId,
    assignee: Annotated[str, Field(min_length=1, max_length=64, description="A staff name")],
    ctx: ToolContext,
) -> str:
    """Assign a ticket to a member of staff."""
    return _out(ctx, _call(ctx, lambda h, _: store.assign(h, ticket_id, assignee)))


@tool(idempotent=True)
def set_ticket_status(ticket_id: TicketId, status: Status, ctx: ToolContext) -> str:
    """Change a ticket's status: open -> pending|solved, pending -> open|solved,
    solved -> open|closed; closed is final."""
    return _out(ctx, _call(ctx, lambda h, _: store.set_status(h, ticket_id, status)))


def _refund(
    ctx: ToolContext,
    order_id: int,
    amount: float,
    reason: str,
    ticket_id: int | None,
    limit: float | None,
) -> str:
    key = ctx.idempotency_key
    row = _call(
        ctx,
        lambda h, s: store.refund_order(
            h,
            s,
            order_id=order_id,
            amount=amount,
            reason=reason,
            ticket_id=ticket_id,
            key=key,
            limit=limit,
        ),
    )
    return _out(ctx, row)


Amount = Annotated[
    float, Field(gt=0, le=1_000_000, description="Dollars and cents (read_ticket shows totals)")
]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


@tool(reconcile=_rerun_is_safe)
def refund_order(
    order_id: OrderId,
    amount: Amount,
    reason: Reason,
    ctx: ToolContext,
    ticket_id: Annotated[int | None, Field(ge=1)] = None,
) -> str:
    """Refund part or all of a completed order, up to the approval threshold (larger
    refunds: refund_order_large). Never more than the order total minus earlier refunds."""
    return _refund(
        ctx, order_id, amount, reason, ticket_id, ctx.settings.tickets.refund_approval_usd
    )


@tool(reconcile=_rerun_is_safe, requires_approval=True)
def refund_order_large(
    order_id: OrderId,
    amount: Amount,
    reason: Reason,
    ctx: ToolContext,
    ticket_id: Annotated[int | None, Field(ge=1)] = None,
) -> str:
    """Refund an order above the approval threshold: a human approves each call first."""
    return _refund(ctx, order_id, amount, reason, ticket_id, None)


TICKET_TOOLS: tuple[Tool, ...] = (
    search_tickets,
    read_ticket,
    search_articles,
    read_article,
    add_comment,
    assign_ticket,
    set_ticket_status,
    refund_order,
    refund_order_large,
)
"""Every help-desk tool, in the order the model sees them."""

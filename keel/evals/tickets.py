"""The ticket desk's eval: help-desk tasks on the sample data, each result checked against
the databases with plain SQL over the shop's raw rows (never through the tools).

Cases: double charges to refund (the headline ticket 42, then other tickets each with one of
its customer's recent completed orders), a refund of an order the shop already refunded and
one of a cancelled order (both must be refused, nothing refunded, the answer saying why). A
double charge succeeds when exactly one refund of the order's total is recorded against the
ticket, a public comment tells the customer and the answer states the amount.
`run_ticket_eval` reports success, P50/P99 wall time and cost per run, the model's tokens
priced at a hosted model's list price (`price_as`).

`python -m keel.evals.tickets [--model scripted:tickets] [--runs N] [--json]`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from keel.config import Settings
from keel.evals.workload_eval import Tally, WorkloadResult, priced_as, workload_main
from keel.tickets import sample
from keel.tickets.db import helpdesk_url, open_helpdesk
from keel.tools.sample_db import ensure_sample_db

__all__ = ["TicketCase", "run_ticket_eval", "ticket_cases"]


@dataclass(frozen=True)
class TicketCase:
    request: str
    ticket: int
    order: int
    refund_cents: int | None
    """The one refund expected (the order's total), or None: nothing may be refunded."""
    reason: str = ""
    """What the answer must say when nothing may be refunded."""


def _total_cents(shop: sqlite3.Connection, order: int) -> int:
    rows = shop.execute(
        "SELECT quantity, unit_price FROM order_items WHERE order_id = ?", (order,)
    ).fetchall()
    return round(round(sum(q * p for q, p in rows), 2) * 100)


def _request(ticket: int, order: int) -> str:
    return (
        f"Ticket {ticket}: the customer was charged twice for order {order} — refund the "
        "duplicate and tell them"
    )


def ticket_cases(shop_db: Path, desk_db: Path, doubles: int = 3) -> list[TicketCase]:
    """`doubles` double charges (ticket 42 first), then the two refusals."""
    with sqlite3.connect(desk_db) as desk:
        tickets = desk.execute("SELECT id, customer_id, order_id FROM helpdesk_tickets").fetchall()
    by_id = {t[0]: t for t in tickets}
    cases: list[TicketCase] = []
    with sqlite3.connect(shop_db) as shop:
        first = by_id[sample.DOUBLE_CHARGE][2]
        cases.append(
            TicketCase(
                _request(sample.DOUBLE_CHARGE, first),
                sample.DOUBLE_CHARGE,
                first,
                _total_cents(shop, first),
            )
        )
        used = {first}
        for ticket, customer, _ in sorted(tickets):
            if len(cases) >= doubles:
                break
            if ticket in (sample.LARGE_DOUBLE_CHARGE, sample.DOUBLE_CHARGE):
                continue
            recent = shop.execute(
                "SELECT id, status FROM orders WHERE customer_id = ? "
                "ORDER BY order_date DESC, id DESC LIMIT 10",
                (customer,),
            ).fetchall()
            order = next((o for o, st in recent if st == "completed" and o not in used), None)
            if order is None or _total_cents(shop, order) > 10_000:  # below the threshold
                continue
            used.add(order)
            cases.append(
                TicketCase(_request(ticket, order), ticket, order, _total_cents(shop, order))
            )
    for ticket, reason in (
        (sample.ALREADY_REFUNDED, "already refunded"),
        (sample.CANCELLED_ORDER, "cancelled"),
    ):
        order = by_id[ticket][2]
        cases.append(TicketCase(_request(ticket, order), ticket, order, None, reason))
    return cases


def case_is_correct(desk_db: Path, case: TicketCase, output: str, success: bool) -> bool:
    with sqlite3.connect(desk_db) as desk:
        refunds = desk.execute(
            "SELECT amount_cents, ticket_id FROM helpdesk_refunds WHERE order_id = ?",
            (case.order,),
        ).fetchall()
        comments = desk.execute(
            "SELECT count(*) FROM helpdesk_comments WHERE ticket_id = ? AND public "
            "AND idempotency_key IS NOT NULL AND body LIKE ?",
            (case.ticket, f"%{case.order}%"),
        ).fetchone()[0]
    if case.refund_cents is None:
        return refunds == [] and case.reason in output.lower()
    amount = f"{case.refund_cents / 100:.2f}"
    return (
        success
        and refunds == [(case.refund_cents, case.ticket)]
        and comments >= 1
        and amount in output
    )


async def run_ticket_eval(
    settings: Settings, *, runs: int | None = None, price_as: str = "gpt-4o-mini"
) -> WorkloadResult:
    """Run the cases (each once; `runs` takes the first N) through the `ticket_desk` agent."""
    from keel.graphs.ticket_desk import agent as ticket_desk
    from keel.runtime import open_agent

    settings = priced_as(settings, price_as, "scripted:tickets")
    shop = ensure_sample_db(settings.home)
    open_helpdesk(settings, f"sqlite:///{shop}")
    desk = Path(helpdesk_url(settings).removeprefix("sqlite:///"))
    cases = ticket_cases(shop, desk)[: runs or None]
    tally = Tally()
    async with open_agent(ticket_desk, settings=settings) as agent:
        for i, case in enumerate(cases):
            result = await tally.run(agent, case.request, f"ticket-eval-{i}")
            correct = case_is_correct(desk, case, result.output, result.success)
            tally.judge(case.request, result, correct)
    return tally.result("ticket_desk", settings, price_as)


def main(argv: Sequence[str] | None = None) -> int:
    return workload_main(run_ticket_eval, default_model="scripted:tickets", doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())

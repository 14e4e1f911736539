"""The ticket desk agent end to end with `scripted:tickets`, on every saver: the headline
task, approval above the threshold (approve, reject), crash and resume with no duplicate
comment or refund, bad input and a help desk that is down. Every check reads the databases
with plain SQL; the truth (an order's total) comes from the shop database."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings, load_settings
from keel.graphs.ticket_desk import agent as ticket_desk
from keel.runtime import open_agent
from keel.tickets import sample, store
from keel.tools.sample_db import ensure_sample_db
from tests.cli_runner import keel_runner

Desk = Callable[..., AbstractAsyncContextManager[Any]]


class Crash(BaseException):
    """Stands in for the process dying right after a write committed."""


class Home:
    """The test's home: the shop and the help desk, read with plain sqlite3."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shop = ensure_sample_db(root)
        self.helpdesk = root / "helpdesk.sqlite"

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.helpdesk) as conn:
            return conn.execute(sql, params).fetchall()

    def order_of(self, ticket_id: int) -> int:
        self.ensure()
        return int(self.rows("SELECT order_id FROM helpdesk_tickets WHERE id = ?", ticket_id)[0][0])

    def total(self, order_id: int) -> float:
        with sqlite3.connect(self.shop) as conn:
            (total,) = conn.execute(
                "SELECT ROUND(SUM(quantity * unit_price), 2) FROM order_items WHERE order_id = ?",
                (order_id,),
            ).fetchone()
        return float(total)

    def refunds(self, order_id: int) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT amount_cents, ticket_id, idempotency_key FROM helpdesk_refunds "
            "WHERE order_id = ?",
            order_id,
        )

    def comments(self, ticket_id: int) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT body, public, idempotency_key FROM helpdesk_comments "
            "WHERE ticket_id = ? AND idempotency_key IS NOT NULL",
            ticket_id,
        )

    def status(self, ticket_id: int) -> str:
        return str(self.rows("SELECT status FROM helpdesk_tickets WHERE id = ?", ticket_id)[0][0])

    def ensure(self) -> None:
        from keel.tickets.db import open_helpdesk

        open_helpdesk(load_settings(home=self.root), f"sqlite:///{self.shop}")


@pytest.fixture
def tid() -> Callable[[str], str]:
    """Postgres checkpoints are shared by the session: thread ids get a suffix of their own."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def desk(home: Home, checkpoint_url: str) -> Desk:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Any]:
        settings: Settings = load_settings(
            home=home.root,
            model="scripted:tickets",
            checkpoint_url=checkpoint_url,
            retry={"initial_s": 0.0, "max_s": 0.0},
            **overrides,
        )
        async with open_agent(ticket_desk, settings=settings) as agent:
            yield agent

    return make


def task(ticket_id: int, order_id: int) -> str:
    return (
        f"Ticket {ticket_id}: the customer was charged twice for order {order_id} — "
        "refund the duplicate and tell them"
    )


async def test_headline_task(desk: Desk, home: Home, tid: Callable[[str], str]) -> None:
    order = home.order_of(sample.DOUBLE_CHARGE)
    total = home.total(order)
    async with desk() as agent:
        result = await agent.arun(task(sample.DOUBLE_CHARGE, order), thread_id=tid("head"))
    assert result.success, result.error
    [(cents, ticket, key)] = home.refunds(order)
    assert (cents, ticket) == (round(total * 100), sample.DOUBLE_CHARGE)
    assert key.startswith(f"{tid('head')}:call_refund_order_")  # the call's idempotency key
    [(body, public, _)] = home.comments(sample.DOUBLE_CHARGE)
    assert public == 1 and f"${total:.2f}" in body and str(order) in body
    assert home.status(sample.DOUBLE_CHARGE) == "solved"
    assert f"${total:.2f}" in result.output and "solved" in result.output
    tools = [s["action"] for s in result.metadata.trace if s["node"] == "act"]
    assert tools == [
        "read_ticket",
        "search_articles",
        "refund_order",
        "add_comment",
        "set_ticket_status",
    ]


@pytest.mark.parametrize("answer", ["approve", "reject"])
async def test_refund_above_the_threshold_waits_for_a_human(
    desk: Desk, home: Home, tid: Callable[[str], str], answer: str
) -> None:
    order = home.order_of(sample.LARGE_DOUBLE_CHARGE)
    total = home.total(order)
    thread = tid(f"large-{answer}")
    async with desk() as agent:
        waiting = await agent.arun(task(sample.LARGE_DOUBLE_CHARGE, order), thread_id=thread)
        assert waiting.status == "interrupted"
        [request] = await agent.apending(thread)
        assert request["tool"] == "refund_order_large"
        assert request["arguments"]["amount"] == total
        assert home.refunds(order) == [], "nothing is refunded before the human answers"
        if answer == "approve":
            result = await agent.aapprove(thread)
        else:
            result = await agent.aapprove(thread, reject="too large for a duplicate charge")
    if answer == "approve":
        assert result.success, result.error
        assert [r[0] for r in home.refunds(order)] == [round(total * 100)]
        assert len(home.comments(sample.LARGE_DOUBLE_CHARGE)) == 1
    else:
        assert home.refunds(order) == [] and home.comments(sample.LARGE_DOUBLE_CHARGE) == []
        assert "too large for a duplicate charge" in result.output


async def test_the_threshold_is_a_setting(
    desk: Desk, home: Home, tid: Callable[[str], str]
) -> None:
    order = home.order_of(sample.DOUBLE_CHARGE)
    async with desk(tickets={"refund_approval_usd": 10}) as agent:
        waiting = await agent.arun(task(sample.DOUBLE_CHARGE, order), thread_id=tid("low"))
    assert waiting.status == "interrupted" and home.refunds(order) == []


@pytest.mark.parametrize("write", ["refund_order", "add_comment"])
async def test_crash_after_a_write_then_resume_writes_once(
    desk: Desk,
    home: Home,
    tid: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    write: str,
) -> None:
    """The process dies after the write committed but before the journal recorded it: the
    resumed run re-runs the call (its outcome is unknown), and the key stored with the row
    makes the second write a no-op."""
    real = getattr(store, write)
    crashed: list[str] = []

    def crash_after(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not crashed:
            crashed.append(kwargs["key"])
            raise Crash()
        return result

    monkeypatch.setattr(store, write, crash_after)
    order = home.order_of(sample.DOUBLE_CHARGE)
    thread = tid(f"crash-{write}")
    async with desk() as agent:
        with pytest.raises(Crash):
            await agent.arun(task(sample.DOUBLE_CHARGE, order), thread_id=thread)
        result = await agent.aresume(thread)
    assert result.success, result.error
    assert len(home.refunds(order)) == 1
    assert len(home.comments(sample.DOUBLE_CHARGE)) == 1
    key = crashed[0]
    assert key.startswith(f"{thread}:")
    rows = home.refunds(order) if write == "refund_order" else home.comments(sample.DOUBLE_CHARGE)
    assert rows[0][2] == key, "the resumed write found the first one by its key"


async def test_unknown_ticket_is_reported(desk: Desk, tid: Callable[[str], str]) -> None:
    async with desk() as agent:
        result = await agent.arun(task(999, 1), thread_id=tid("unknown"))
    assert "there is no ticket 999; ticket ids run from 1 to 60" in result.output


async def test_already_refunded_order_is_refused(
    desk: Desk, home: Home, tid: Callable[[str], str]
) -> None:
    order = home.order_of(sample.ALREADY_REFUNDED)
    async with desk() as agent:
        result = await agent.arun(task(sample.ALREADY_REFUNDED, order), thread_id=tid("done"))
    assert "No refund was made" in result.output and "already refunded" in result.output
    assert home.refunds(order) == []


async def test_helpdesk_down_fails_cleanly(desk: Desk, tid: Callable[[str], str]) -> None:
    async with desk(
        tickets={"url": "postgresql://postgres@127.0.0.1:1/helpdesk", "timeout_s": 1},
        limits={"max_tool_attempts": 2},
    ) as agent:
        result = await agent.arun(task(42, 1), thread_id=tid("down"))
    assert "help desk database is unavailable" in json.dumps(result.to_dict())
    assert not (result.success and "Refunded" in result.output)


def test_keel_run_agent_ticket_desk(tmp_path: Path) -> None:
    """`keel run --agent ticket_desk` from the repository, as a user runs it."""
    keel = keel_runner(tmp_path)
    home = Home(tmp_path / "home")
    order = home.order_of(sample.DOUBLE_CHARGE)
    done = keel(
        "run", "--agent", "ticket_desk", "--model", "scripted:tickets", "--json",
        task(sample.DOUBLE_CHARGE, order),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    total = home.total(order)
    assert result["success"] and f"${total:.2f}" in result["output"]
    assert [r[0] for r in home.refunds(order)] == [round(total * 100)]


@pytest.mark.parametrize(("model", "success"), [("scripted:tickets", 1.0), ("scripted:echo", 0.0)])
async def test_ticket_eval_checks_against_the_databases(
    tmp_path: Path, model: str, success: float
) -> None:
    from keel.evals.tickets import run_ticket_eval

    settings = load_settings(model=model, home=tmp_path / "eval", checkpoint_url="memory://")
    result = await run_ticket_eval(settings)
    assert result.runs == 5 and result.success == success, result.failures
    assert result.p99_s >= result.p50_s
    if success:
        assert result.cost_per_run_usd > 0  # priced as gpt-4o-mini

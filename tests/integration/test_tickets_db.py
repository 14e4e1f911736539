"""The help desk's database: migrations, the sample data, full-text search, the rules of
every read and write, on SQLite and Postgres. Truths are computed from the shop database
with plain SQL, never with `keel.tickets`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from keel.config import Settings, load_settings
from keel.errors import ToolInputError, ToolTransientError
from keel.tickets import sample, store
from keel.tickets.db import helpdesk_url, open_helpdesk, shop_engine
from keel.tools.registry import ToolContext
from keel.tools.sample_db import ensure_sample_db
from keel.tools.tickets import bounded, read_ticket, refund_order, search_tickets

Opened = tuple[Engine, Engine, Path]


def order_total(shop: Path, order_id: int) -> float:
    with sqlite3.connect(shop) as conn:
        (total,) = conn.execute(
            "SELECT ROUND(SUM(quantity * unit_price), 2) FROM order_items WHERE order_id = ?",
            (order_id,),
        ).fetchone()
    return float(total)


def order_status(shop: Path, order_id: int) -> str:
    with sqlite3.connect(shop) as conn:
        return str(
            conn.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
        )


@pytest.fixture(params=["sqlite", "postgres"])
def desk_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'helpdesk.sqlite'}"
        return
    from tests.conftest import fresh_database

    with fresh_database("keel_helpdesk") as (url, _):
        yield url


@pytest.fixture
def settings(tmp_path: Path, desk_url: str) -> Settings:
    return load_settings(home=tmp_path / "home", tickets={"url": desk_url})


@pytest.fixture
def opened(settings: Settings) -> Opened:
    shop = ensure_sample_db(settings.home)
    url = f"sqlite:///{shop}"
    return open_helpdesk(settings, url), shop_engine(url), shop


def ticket_order(engine: Engine, ticket_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT order_id FROM helpdesk_tickets WHERE id = :t"), {"t": ticket_id}
            ).scalar_one()
        )


def refunds_of(engine: Engine, order_id: int) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT amount_cents, idempotency_key FROM helpdesk_refunds WHERE order_id = :o "
                "ORDER BY id"
            ),
            {"o": order_id},
        ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


# ------------------------------------------------------------------ schema and sample data
def test_migrations_keep_their_own_version_table(opened: Opened) -> None:
    engine, _, _ = opened
    names = set(inspect(engine).get_table_names())
    assert {
        "helpdesk_tickets",
        "helpdesk_comments",
        "helpdesk_refunds",
        "helpdesk_articles",
    } <= names
    assert "helpdesk_alembic_version" in names and "alembic_version" not in names
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM helpdesk_alembic_version")).scalar()
            == "0001"
        )


def test_sample_is_linked_to_the_shop_and_tells_the_fixed_stories(opened: Opened) -> None:
    engine, _, shop = opened
    with engine.connect() as conn:
        customers = conn.execute(text("SELECT id, email FROM helpdesk_customers ORDER BY id")).all()
        count = conn.execute(text("SELECT count(*) FROM helpdesk_tickets")).scalar()
    with sqlite3.connect(shop) as s:
        shop_customers = s.execute("SELECT id, email FROM customers ORDER BY id").fetchall()
    assert [tuple(c) for c in customers] == shop_customers
    assert count == sample.TICKETS
    small = order_total(shop, ticket_order(engine, sample.DOUBLE_CHARGE))
    large = order_total(shop, ticket_order(engine, sample.LARGE_DOUBLE_CHARGE))
    assert 20 <= small <= 95 < 150 <= large
    assert order_status(shop, ticket_order(engine, sample.DOUBLE_CHARGE)) == "completed"
    assert order_status(shop, ticket_order(engine, sample.ALREADY_REFUNDED)) == "refunded"
    assert order_status(shop, ticket_order(engine, sample.CANCELLED_ORDER)) == "cancelled"


def _dump(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return [
            conn.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1")).all()
            for table, columns in (
                ("helpdesk_customers", "*"),
                ("helpdesk_staff", "*"),
                ("helpdesk_tickets", "*"),
                ("helpdesk_comments", "*"),
                ("helpdesk_articles", "id, slug, title, body, updated_at"),  # not Postgres' index
                ("helpdesk_meta", "*"),
            )
        ]


def test_sample_is_deterministic(tmp_path: Path, opened: Opened, settings: Settings) -> None:
    """A second help desk built from the same shop data (on SQLite) holds the same rows."""
    engine, _, shop = opened
    other = load_settings(
        home=settings.home, tickets={"url": f"sqlite:///{tmp_path / 'again.sqlite'}"}
    )
    again = open_helpdesk(other, f"sqlite:///{shop}")
    assert _dump(again) == _dump(engine)
    assert len(_dump(engine)[2]) == sample.TICKETS


# ------------------------------------------------------------------ full-text search
def test_article_search_ranks_by_relevance(opened: Opened) -> None:
    engine, _, _ = opened
    found = store.search_articles(engine, "I was charged twice!", limit=3)
    assert found[0]["slug"] == "duplicate-charges"
    assert [a["slug"] for a in store.search_articles(engine, "password", limit=5)] == [
        "password-reset"
    ]
    # stemming: "refunds" finds the articles saying "refund"/"refunded"
    assert {"refund-policy", "refund-timing"} <= {
        a["slug"] for a in store.search_articles(engine, "refunds", limit=10)
    }
    assert store.search_articles(engine, "zebra xylophone", limit=3) == []
    with pytest.raises(ToolInputError, match="at least one word"):
        store.search_articles(engine, "?!", limit=3)


def test_article_search_follows_edits(opened: Opened) -> None:
    """The index follows the table (FTS5 triggers / a generated tsvector column)."""
    engine, _, _ = opened
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE helpdesk_articles SET body = 'Gift cards never expire.' "
                "WHERE slug = 'warranty'"
            )
        )
    assert store.search_articles(engine, "gift cards", limit=3)[0]["slug"] == "warranty"
    assert "warranty" not in {a["slug"] for a in store.search_articles(engine, "repair", limit=9)}


# ------------------------------------------------------------------ the rules
def test_status_transitions(opened: Opened) -> None:
    engine, _, _ = opened
    assert store.set_status(engine, 42, "solved")["previous"] == "open"
    assert store.set_status(engine, 42, "solved")["previous"] == "solved"  # repeat: no-op
    assert store.set_status(engine, 42, "closed")["status"] == "closed"
    with pytest.raises(ToolInputError, match=r"'closed' and cannot become 'open'.*final"):
        store.set_status(engine, 42, "open")
    with pytest.raises(ToolInputError, match="unknown status 'done'"):
        store.set_status(engine, 41, "done")
    with pytest.raises(ToolInputError, match="no ticket 999; ticket ids run from 1 to 60"):
        store.set_status(engine, 999, "open")
    with pytest.raises(ToolInputError, match="closed; it cannot be reassigned"):
        store.assign(engine, 42, "omar")
    with pytest.raises(ToolInputError, match="unknown assignee 'zed'"):
        store.assign(engine, 41, "zed")


def test_comment_once_per_key(opened: Opened) -> None:
    engine, _, _ = opened
    first = store.add_comment(engine, 7, "On it.", public=True, author="t", key="k:1")
    again = store.add_comment(engine, 7, "On it.", public=True, author="t", key="k:1")
    assert again["id"] == first["id"]
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM helpdesk_comments WHERE idempotency_key = 'k:1'")
            ).scalar()
            == 1
        )
    with pytest.raises(ToolInputError, match="already used for another comment"):
        store.add_comment(engine, 8, "Other", public=True, author="t", key="k:1")
    with pytest.raises(ToolInputError, match="no ticket 61"):
        store.add_comment(engine, 61, "x", public=True, author="t", key="k:2")


def _refund(opened: Opened, order_id: int, amount: float, key: str, **kw: Any) -> dict[str, Any]:
    engine, shop, _ = opened
    return store.refund_order(
        engine,
        shop,
        order_id=order_id,
        amount=amount,
        reason="test",
        ticket_id=kw.get("ticket_id"),
        key=key,
        limit=kw.get("limit"),
    )


def test_refund_rules(opened: Opened) -> None:
    engine, _, shop = opened
    order = ticket_order(engine, sample.DOUBLE_CHARGE)
    total = order_total(shop, order)
    with pytest.raises(ToolInputError, match="need a human's approval: call refund_order_large"):
        _refund(opened, order, total, "r:0", limit=total - 1)
    with pytest.raises(ToolInputError, match=f"at most \\${total:,.2f}"):
        _refund(opened, order, total + 0.01, "r:1")
    part = _refund(opened, order, 10, "r:2", ticket_id=sample.DOUBLE_CHARGE)
    assert part["amount"] == 10 and part["order_total"] == total
    assert _refund(opened, order, 10, "r:2")["already_done"] is True  # same key: same refund
    rest = round(total - 10, 2)
    with pytest.raises(
        ToolInputError, match=f"\\$10.00 already refunded, so at most \\${rest:,.2f}"
    ):
        _refund(opened, order, rest + 0.01, "r:3")
    _refund(opened, order, rest, "r:4")
    with pytest.raises(ToolInputError, match="already refunded in full"):
        _refund(opened, order, 1, "r:5")
    assert refunds_of(engine, order) == [(1000, "r:2"), (round(rest * 100), "r:4")]
    other = ticket_order(engine, sample.LARGE_DOUBLE_CHARGE)
    with pytest.raises(ToolInputError, match="not to the customer of ticket 42"):
        _refund(opened, other, 1, "r:6", ticket_id=sample.DOUBLE_CHARGE)
    with pytest.raises(ToolInputError, match="already refunded in full by the shop"):
        _refund(opened, ticket_order(engine, sample.ALREADY_REFUNDED), 1, "r:7")
    with pytest.raises(ToolInputError, match="cancelled: the customer was not charged"):
        _refund(opened, ticket_order(engine, sample.CANCELLED_ORDER), 1, "r:8")
    with pytest.raises(ToolInputError, match="no order 999999"):
        _refund(opened, 999999, 1, "r:9")
    with pytest.raises(ToolInputError, match="must be positive"):
        _refund(opened, order, 0.001, "r:10")


# ------------------------------------------------------------------ the tools' envelope
def _ctx(settings: Settings, call: str = "c1") -> ToolContext:
    return ToolContext(settings=settings, tool_call_id=call, thread_id="t")


async def test_tool_outputs_are_bounded(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "tickets": settings.tickets.model_copy(update={"max_rows": 3, "max_result_bytes": 1000})
        }
    )
    found = json.loads(await search_tickets.invoke(search_tickets.validate({}), _ctx(tight)))
    assert len(found["tickets"]) == 3 and found["more"] is True
    read = await read_ticket.invoke(read_ticket.validate({"ticket_id": 42}), _ctx(tight))
    assert len(read) <= 1000 and json.loads(read)["ticket"]["id"] == 42
    data = {"rows": [{"text": "x" * 100} for _ in range(50)], "name": "n"}
    out = bounded(data, 1000)
    assert len(out) <= 1000 and "left out" in json.loads(out)["cut"]


def test_bad_arguments_are_refused_before_running() -> None:
    with pytest.raises(ToolInputError, match="ticket_id"):
        read_ticket.validate({"ticket_id": 0})
    with pytest.raises(ToolInputError, match="status"):
        search_tickets.validate({"status": "finished"})
    with pytest.raises(ToolInputError, match="amount"):
        refund_order.validate({"order_id": 1, "amount": -5, "reason": "x"})


async def test_backend_down_is_transient(tmp_path: Path) -> None:
    down = load_settings(
        home=tmp_path / "home",
        tickets={"url": "postgresql://postgres@127.0.0.1:1/helpdesk", "timeout_s": 1},
    )
    with pytest.raises(ToolTransientError, match="help desk database is unavailable"):
        await read_ticket.invoke(read_ticket.validate({"ticket_id": 1}), _ctx(down))


def test_url_takes_home(tmp_path: Path) -> None:
    assert helpdesk_url(load_settings(home=tmp_path)) == f"sqlite:///{tmp_path}/helpdesk.sqlite"


def test_concurrent_refunds_of_one_order_never_exceed_its_total(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight refunds of the whole order at once, each under its own key: one goes through,
    the others see it (the check and the write are one locked decision). The check is
    slowed down so that, without the lock, every attempt would pass it."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    real = store._refunded_cents

    def slow_check(*args: Any) -> dict[int, int]:
        found = real(*args)
        time.sleep(0.2)
        return found

    monkeypatch.setattr(store, "_refunded_cents", slow_check)
    engine, _, shop = opened
    order = ticket_order(engine, sample.DOUBLE_CHARGE)
    total = order_total(shop, order)

    def attempt(i: int) -> str:
        try:
            _refund(opened, order, total, f"race:{i}")
        except ToolInputError as exc:
            return exc.message
        return "refunded"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("refunded") == 1, outcomes
    assert all("already refunded in full" in o for o in outcomes if o != "refunded")
    assert [cents for cents, _ in refunds_of(engine, order)] == [round(total * 100)]

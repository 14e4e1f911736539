"""Every backend of the checkpoint database is terminated mid-run: the run still finishes,
its side effect happened once, and the outage cost retries (or health-check reconnects)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage

from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import Reconciled, ToolContext, ToolRegistry, tool
from tests.conftest import PG_ADMIN_URL, fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A database only this test uses, so terminating its backends touches nothing else."""
    with fresh_database("keel_outage") as (url, name):
        yield (url, name)


def _terminate_all(dbname: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


@pytest.mark.parametrize("health_check", [True, False])
async def test_terminated_backends_cost_retries_not_runs(
    own_database: tuple[str, str], settings_factory: Any, health_check: bool
) -> None:
    url, dbname = own_database
    effects: list[str] = []
    terminated: list[int] = []
    sleeps: list[float] = []

    def reconcile(key: str) -> Reconciled:
        return Reconciled.done("booked") if key in effects else Reconciled.not_done()

    @tool(reconcile=reconcile)
    def book(room: str, ctx: ToolContext) -> str:
        """Book a room; the database goes away while it runs."""
        effects.append(ctx.idempotency_key)
        terminated.append(_terminate_all(dbname))
        return "booked"

    model = ScriptedModel(
        [
            AIMessage(content="", tool_calls=[{"name": "book", "args": {"room": "7"}, "id": "b1"}]),
            "Room 7 is booked.",
        ]
    )
    settings = settings_factory(
        checkpoint_url=url, checkpoint_pool={"health_check": health_check, "max_size": 4}
    )
    async with open_agent(settings, model=model, tools=ToolRegistry.of([book])) as agent:
        from dataclasses import replace

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        agent.context = replace(agent.context, sleep=sleep)
        result = await agent.arun("book room 7", thread_id="t-outage")
        assert result.success and result.output == "Room 7 is booked."
        assert effects == ["t-outage:b1"], "the booking happened exactly once"
        assert terminated and terminated[0] >= 1, "the backends really were terminated"
        if not health_check:
            assert sleeps, "without the health check the outage surfaced and was retried"
        entry = await agent.context.journal.get("t-outage:b1")  # type: ignore[union-attr]
        assert entry is not None and entry.status == "completed"


async def test_concurrent_startups_set_up_the_tables_once(
    own_database: tuple[str, str],
) -> None:
    """Several processes starting together on a fresh database: racing set-ups are retried."""
    import asyncio

    from keel.checkpoints import open_storage

    async def start(i: int) -> str:
        async with open_storage(own_database[0]) as storage:
            key = f"t{i}:c"
            await storage.journal.start(key, tool="x", arguments="{}", run_id=None)
            entry = await storage.journal.get(key)
            return entry.status if entry else "missing"

    assert await asyncio.gather(*(start(i) for i in range(5))) == ["started"] * 5

"""Crons through the SDK: create, search, count, delete; due crons start their runs once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError
from sqlalchemy import update

from keel.config import Settings
from keel.server.admin import create_key
from keel.server.crons import CronRecord, CronScheduler, CronStore
from keel.server.errors import TooManyRequests
from keel.server.store import Store, service_db_url
from keel.server.tables import crons
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
YEARLY = "0 0 1 1 *"
"""Never due during a test unless a test makes it due."""


@pytest.fixture
def cron_settings(settings_factory: Callable[..., Settings], tmp_path: Path) -> Settings:
    return settings_factory(
        model="scripted:sales",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service={"cron_tick_s": 0.1},
    )


@pytest.fixture
def cron_server(cron_settings: Settings) -> Iterator[str]:
    with running_server(cron_settings) as url:
        yield url


async def _make_due(settings: Settings, cron_id: str) -> None:
    """Move the cron's next run into the past: the next tick starts it."""
    store = Store.open(service_db_url(settings))
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                update(crons)
                .where(crons.c.cron_id == cron_id)
                .values(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await store.close()


async def _until(check: Callable[[], Any], within_s: float = 20) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_create_search_count_delete(cron_server: str) -> None:
    async with get_client(url=cron_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        on_thread = await client.crons.create_for_thread(
            tid, "agent", schedule="*/5 * * * *", input=USER, metadata={"kind": "t"}
        )
        stateless = await client.crons.create(
            "agent", schedule=YEARLY, input=USER, on_run_completed="keep"
        )
        assert on_thread["thread_id"] == tid and on_thread["schedule"] == "*/5 * * * *"
        assert on_thread["payload"]["input"] == USER and on_thread["enabled"] is True
        following = datetime.fromisoformat(on_thread["next_run_date"])
        assert following > datetime.now(UTC) and following.minute % 5 == 0
        assert stateless["thread_id"] is None and stateless["on_run_completed"] == "keep"

        ids = {c["cron_id"] for c in await client.crons.search()}
        assert ids == {on_thread["cron_id"], stateless["cron_id"]}
        assert [c["cron_id"] for c in await client.crons.search(thread_id=tid)] == [
            on_thread["cron_id"]
        ]
        assert [c["cron_id"] for c in await client.crons.search(metadata={"kind": "t"})] == [
            on_thread["cron_id"]
        ]
        assert await client.crons.count() == 2
        assert await client.crons.count(assistant_id="agent", thread_id=tid) == 1
        picked = await client.crons.search(select=["cron_id", "schedule"], limit=1)
        assert len(picked) == 1 and set(picked[0]) == {"cron_id", "schedule"}

        later = datetime.now(UTC) + timedelta(days=30)
        changed = await client.crons.update(
            on_thread["cron_id"], schedule="15 3 * * *", end_time=later, metadata={"kind": "u"}
        )
        assert changed["schedule"] == "15 3 * * *" and changed["metadata"] == {"kind": "u"}
        assert datetime.fromisoformat(changed["next_run_date"]).strftime("%H:%M") == "03:15"
        assert changed["payload"]["input"] == USER  # what was not given stays
        paused = await client.crons.update(on_thread["cron_id"], enabled=False, end_time=None)
        assert paused["enabled"] is False and paused["next_run_date"] is None
        assert paused["end_time"] is None
        assert await client.crons.count(metadata={"kind": "u"}) == 1
        with pytest.raises(UnprocessableEntityError):
            await client.crons.update(on_thread["cron_id"], schedule="* *")
        with pytest.raises(NotFoundError):
            await client.crons.update("no-such-cron", enabled=True)

        await client.crons.delete(on_thread["cron_id"])
        assert [c["cron_id"] for c in await client.crons.search()] == [stateless["cron_id"]]
        with pytest.raises(NotFoundError):
            await client.crons.delete(on_thread["cron_id"])


async def test_a_due_thread_cron_starts_one_run(cron_server: str, cron_settings: Settings) -> None:
    async with get_client(url=cron_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        cron = await client.crons.create_for_thread(tid, "agent", schedule=YEARLY, input=USER)
        await asyncio.sleep(0.5)
        assert await client.runs.list(tid) == []  # not due: nothing runs
        await _make_due(cron_settings, cron["cron_id"])

        async def finished() -> list[Any]:
            found = await client.runs.list(tid)
            return [r for r in found if r["status"] == "success"]

        await _until(finished)
        await asyncio.sleep(0.5)  # several more ticks: the occurrence is not run again
        assert len(await client.runs.list(tid)) == 1
        values = (await client.threads.get_state(tid))["values"]
        assert "Their total revenue was $" in values["outcome"]["output"]
        (after,) = await client.crons.search(thread_id=tid)
        assert datetime.fromisoformat(after["next_run_date"]) > datetime.now(UTC) + timedelta(
            days=1
        )


async def test_a_cron_whose_thread_is_gone_is_deleted(
    cron_server: str, cron_settings: Settings
) -> None:
    async with get_client(url=cron_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        cron = await client.crons.create_for_thread(tid, "agent", schedule=YEARLY, input=USER)
        await client.threads.delete(tid)
        assert await client.crons.count() == 0  # with its thread, not at its next occurrence
        with pytest.raises(NotFoundError):
            await client.crons.update(cron["cron_id"], enabled=False)


async def test_a_due_stateless_cron_runs_on_a_new_thread(
    cron_server: str, cron_settings: Settings
) -> None:
    async with get_client(url=cron_server, api_key=None) as client:
        cron = await client.crons.create(
            "agent", schedule=YEARLY, input=USER, on_run_completed="keep"
        )
        await _make_due(cron_settings, cron["cron_id"])

        async def made() -> list[Any]:
            return await client.threads.search(metadata={"cron_id": cron["cron_id"]})

        (thread,) = await _until(made)

        async def finished() -> list[Any]:
            found = await client.runs.list(thread["thread_id"])
            return [r for r in found if r["status"] == "success"]

        await _until(finished)
        values = (await client.threads.get_state(thread["thread_id"]))["values"]
        assert "Their total revenue was $" in values["outcome"]["output"]


async def test_bad_crons_are_422(cron_server: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    async with get_client(url=cron_server, api_key=None) as client:
        tid = (await client.threads.create())["thread_id"]
        for kwargs in (
            {"schedule": "every minute"},
            {"schedule": "61 * * * *"},
            {"schedule": "* * * * * *"},  # 6 fields (seconds): not a 5-field schedule
            {"schedule": "* * * * *", "timezone": "Mars/Olympus"},
            {"schedule": "* * * * *", "timezone": "America"},  # a directory of zones
            {"schedule": "0 0 31 2 *"},  # February 31st never comes
            {"schedule": "* * * * *", "end_time": past},
        ):
            with pytest.raises(UnprocessableEntityError) as caught:
                await client.crons.create_for_thread(tid, "agent", input=USER, **kwargs)
            assert caught.value.response.json()["message"]
        with pytest.raises(UnprocessableEntityError) as bad:
            await client.crons.create("agent", schedule="nope", input=USER)
        assert "5-field cron expression" in bad.value.response.json()["message"]
        with pytest.raises(UnprocessableEntityError):
            await client.crons.create("agent", schedule=YEARLY)  # no input
        with pytest.raises(NotFoundError):
            await client.crons.create_for_thread(
                "no-such-thread", "agent", schedule=YEARLY, input=USER
            )
        with pytest.raises(NotFoundError):
            await client.crons.create("other", schedule=YEARLY, input=USER)
        assert await client.crons.count() == 0


async def test_tenants_do_not_see_each_others_crons(secured: Settings) -> None:
    acme = (await create_key(secured, "acme", "member"))["api_key"]
    globex = (await create_key(secured, "globex", "member"))["api_key"]
    with running_server(secured) as url:
        async with get_client(url=url, api_key=acme) as a, get_client(url=url, api_key=globex) as g:
            tid = (await a.threads.create())["thread_id"]
            cron = await a.crons.create_for_thread(tid, "agent", schedule=YEARLY, input=USER)
            assert await g.crons.search() == []
            assert await g.crons.search(thread_id=tid) == []
            assert await g.crons.count() == 0
            with pytest.raises(NotFoundError):
                await g.crons.delete(cron["cron_id"])
            with pytest.raises(NotFoundError):
                await g.crons.update(cron["cron_id"], enabled=False)
            with pytest.raises(NotFoundError):
                await g.crons.create_for_thread(tid, "agent", schedule=YEARLY, input=USER)
            assert [c["cron_id"] for c in await a.crons.search()] == [cron["cron_id"]]


# the scheduler's tick, called directly ----------------------------------------------------


def _cron(now: datetime, **overrides: Any) -> CronRecord:
    values: dict[str, Any] = {
        "cron_id": str(uuid.uuid4()),
        "tenant_id": "default",
        "role": "admin",
        "thread_id": None,
        "assistant_id": "agent",
        "schedule": "* * * * *",
        "timezone": None,
        "payload": {"input": USER},
        "metadata": {},
        "enabled": True,
        "on_run_completed": "delete",
        "next_run_at": now - timedelta(seconds=1),
        "end_time": None,
        "created_at": now,
        "updated_at": now,
        **overrides,
    }
    return CronRecord(**values)


class Recorder:
    def __init__(self, refuse: bool = False) -> None:
        self.started: list[str] = []
        self.refuse = refuse

    async def __call__(self, cron: CronRecord) -> None:
        if self.refuse:
            raise TooManyRequests("the run queue is full")
        self.started.append(cron.cron_id)


async def test_after_downtime_a_cron_runs_once_and_end_time_stops_it(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'service.sqlite'}")
    await store.migrate()
    table = CronStore(store.engine)
    now = datetime(2026, 3, 4, 10, 30, 20, tzinfo=UTC)
    missed = _cron(now, next_run_at=now - timedelta(days=1))  # 1440 missed minutes
    ended = _cron(now, end_time=now - timedelta(hours=1), next_run_at=now - timedelta(hours=2))
    disabled = _cron(now, enabled=False)
    for c in (missed, ended, disabled):
        await table.create(c)
    recorder = Recorder()
    scheduler = CronScheduler(table, recorder, tick_s=10)
    try:
        assert await scheduler.tick(now) == 1
        assert recorder.started == [missed.cron_id]
        assert await scheduler.tick(now + timedelta(seconds=30)) == 0
        again = await table.get(missed.cron_id, "default")
        assert again is not None and again.next_run_at == datetime(2026, 3, 4, 10, 31, tzinfo=UTC)
        done = await table.get(ended.cron_id, "default")
        assert done is not None and done.next_run_at is None
        assert await scheduler.tick(now + timedelta(minutes=1)) == 1
    finally:
        await store.close()


async def test_a_refused_run_skips_the_occurrence(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'service.sqlite'}")
    await store.migrate()
    table = CronStore(store.engine)
    now = datetime(2026, 3, 4, 10, 30, 20, tzinfo=UTC)
    cron = _cron(now)
    await table.create(cron)
    scheduler = CronScheduler(table, Recorder(refuse=True), tick_s=10)
    try:
        assert await scheduler.tick(now) == 0
        assert scheduler.skipped == 1
        assert await scheduler.tick(now) == 0 and scheduler.skipped == 1  # not retried
        moved = await table.get(cron.cron_id, "default")
        assert moved is not None and moved.next_run_at == datetime(2026, 3, 4, 10, 31, tzinfo=UTC)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_concurrent_ticks_on_postgres_start_each_cron_once(postgres_url: str) -> None:
    stores = [Store.open(postgres_url, pool_size=2) for _ in range(3)]
    await stores[0].migrate()
    now = datetime.now(UTC)
    made = [_cron(now) for _ in range(40)]
    for c in made:
        await CronStore(stores[0].engine).create(c)
    recorders = [Recorder() for _ in stores]
    schedulers = [
        CronScheduler(CronStore(s.engine), r, tick_s=10)
        for s, r in zip(stores, recorders, strict=True)
    ]
    try:
        counts = await asyncio.gather(*(s.tick(now) for s in schedulers for _ in range(3)))
        started = [cid for r in recorders for cid in r.started]
        assert sum(counts) == len(made)
        assert sorted(started) == sorted(c.cron_id for c in made)  # each once, none lost
    finally:
        async with stores[0].engine.begin() as conn:
            await conn.execute(crons.delete())
        for s in stores:
            await s.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_api_processes_with_workers_start_a_due_cron_once(
    distributed: dict[str, Any],
) -> None:
    base = distributed["settings"]
    settings = base.model_copy(
        update={"service": base.service.model_copy(update={"cron_tick_s": 0.05})}
    )
    with (
        running_server(settings) as url,
        running_server(settings),  # a second API process ticking on the same database
        workers(distributed, 1, 2),
    ):
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            cron = await client.crons.create_for_thread(tid, "agent", schedule=YEARLY, input=USER)
            await _make_due(settings, cron["cron_id"])

            async def finished() -> list[Any]:
                found = await client.runs.list(tid)
                return [r for r in found if r["status"] == "success"]

            await _until(finished, within_s=60)
            await asyncio.sleep(0.5)  # many more ticks of both processes
            assert len(await client.runs.list(tid)) == 1
            values = (await client.threads.get_state(tid))["values"]
            assert "Their total revenue was $" in values["outcome"]["output"]

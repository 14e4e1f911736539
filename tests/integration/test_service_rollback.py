"""`multitask_strategy="rollback"`, thread deletion dropping the idempotency journal, and
`/threads/search` refusing a `values` filter: the official SDK against a running server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from keel.checkpoints import savers
from keel.checkpoints.journal import MemoryJournal, thread_of
from keel.config import Settings
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry, tool
from tests.integration.service_server import nap, running_server

PAID: list[str] = []


@tool
async def pay(item: str) -> str:
    """Pay for an item (a side effect: journaled, never repeated)."""
    PAID.append(item)
    return f"paid for {item}"


def pay_model() -> FunctionModel:
    """Pays for the item the question names; a question with "slow" then naps 30 s."""

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        question = str([m for m in messages if isinstance(m, HumanMessage)][-1].content)
        done = [m for m in messages[messages.index(_last_human(messages)) :] if _is_tool(m)]
        if not done:
            call = {"name": "pay", "args": {"item": question}, "id": f"call_{info.index}"}
            return AIMessage(content="", tool_calls=[call])
        if "slow" in question and len(done) == 1:
            call = {"name": "nap", "args": {"seconds": 30}, "id": f"call_{info.index}"}
            return AIMessage(content="", tool_calls=[call])
        return AIMessage(content=f"done: {done[0].content}")

    return FunctionModel(fn=reply, model_name="scripted:pay")


def _last_human(messages: list[BaseMessage]) -> BaseMessage:
    return [m for m in messages if isinstance(m, HumanMessage)][-1]


def _is_tool(message: BaseMessage) -> bool:
    return isinstance(message, ToolMessage)


def _pay_server(settings: Settings) -> Any:
    registry = ToolRegistry.of([*default_tools(), nap, pay])
    return running_server(settings, model=pay_model(), tools=registry)


async def _until_written(client: Any, thread_id: str, run_id: str) -> None:
    """Until run `run_id` is running and has written a checkpoint after its tool call."""
    for _ in range(600):
        history = await client.threads.get_history(thread_id, limit=50)
        steps = [h for h in history if h["metadata"].get("run_id") == run_id]
        if len(steps) >= 3:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} wrote no checkpoints")


async def _assert_rolled_back(client: Any, tid: str, old: str, kept: set[str]) -> None:
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, old)
    assert old not in {r["run_id"] for r in await client.runs.list(tid)}
    history = await client.threads.get_history(tid, limit=200)
    assert not [h for h in history if h["metadata"].get("run_id") == old]
    assert kept <= {h["checkpoint"]["checkpoint_id"] for h in history}
    state = await client.threads.get_state(tid)
    assert state["checkpoint"]["checkpoint_id"] == history[0]["checkpoint"]["checkpoint_id"]
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_rollback_in_process(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    PAID.clear()
    settings = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
    with _pay_server(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            first = await client.runs.wait(tid, "agent", input={"question": "tea"})
            assert first["outcome"]["output"] == "done: paid for tea"
            kept = {h["checkpoint"]["checkpoint_id"] for h in await client.threads.get_history(tid)}
            slow = await client.runs.create(tid, "agent", input={"question": "slow cake"})
            await _until_written(client, tid, slow["run_id"])
            newer = await client.runs.wait(
                tid, "agent", input={"question": "bread"}, multitask_strategy="rollback"
            )
            assert newer["outcome"]["output"] == "done: paid for bread"
            await _assert_rolled_back(client, tid, slow["run_id"], kept)
            values = (await client.threads.get_state(tid))["values"]
            humans = [m["content"] for m in values["messages"] if m["type"] == "human"]
            assert [h for h in humans if "cake" in h] == [] and len(humans) == 2
            # the rolled-back run's paid call is journaled under its own id: bread was paid
            assert PAID == ["tea", "slow cake", "bread"]


class _Rows:
    """Counts journal rows in the server's journal, whatever its kind."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = url
        self.memory: list[MemoryJournal] = []
        if url.startswith("memory://"):
            seen = self.memory

            class Seen(MemoryJournal):
                def __init__(self) -> None:
                    super().__init__()
                    seen.append(self)

            monkeypatch.setattr(savers, "MemoryJournal", Seen)

    def count(self, where: str, value: str) -> int:
        """Rows whose `where` column (thread_id or result) is `value`."""
        if self.memory:
            return sum(
                1
                for e in self.memory[-1].entries.values()
                if (thread_of(e.key) if where == "thread_id" else e.result) == value
            )
        sql = f"SELECT count(*) FROM keel_tool_journal WHERE {where} = "
        if self.url.startswith("sqlite"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
                return int(db.execute(sql + "?", (value,)).fetchone()[0])
        with psycopg.connect(self.url) as pg:
            found = pg.execute(sql + "%s", (value,)).fetchone()
            return int(found[0]) if found else 0


async def test_deleting_a_thread_drops_its_journal_rows(
    settings_factory: Callable[..., Settings], checkpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _Rows(checkpoint_url, monkeypatch)
    with _pay_server(settings_factory(checkpoint_url=checkpoint_url)) as server:
        async with get_client(url=server, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            other = (await client.threads.create())["thread_id"]
            await client.runs.wait(tid, "agent", input={"question": "tea"})
            await client.runs.wait(other, "agent", input={"question": "jam"})
            assert rows.count("thread_id", tid) == 1 and rows.count("thread_id", other) == 1
            await client.threads.delete(tid)
            assert rows.count("thread_id", tid) == 0 and rows.count("thread_id", other) == 1
            # a stateless run's temporary thread leaves no journal rows behind either
            before = len(PAID)
            await client.runs.wait(None, "agent", input={"question": "milk"})
            assert len(PAID) == before + 1
            assert rows.count("result", "paid for milk") == 0
            await client.threads.delete(other)


async def test_search_by_values_is_refused(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    with _pay_server(settings_factory()) as url:
        async with get_client(url=url, api_key=None) as client:
            with pytest.raises(UnprocessableEntityError) as refused:
                await client.threads.search(values={"question": "tea"})
            assert "values" in str(refused.value)
            assert await client.threads.search(values={}) == []

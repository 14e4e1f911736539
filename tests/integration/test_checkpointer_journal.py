"""`open_agent(checkpointer=…)`: a saver the caller opened still gets the idempotency journal
(in the saver's own database); an unknown saver with side-effecting tools is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from keel.checkpoints.journal import MemoryJournal
from keel.checkpoints.retention import RetentionPolicy, storage_bytes
from keel.config import Settings
from keel.errors import ConfigError
from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import ToolContext, ToolRegistry, tool
from tests.conftest import fresh_database

SaverFactory = Callable[[], AbstractAsyncContextManager[BaseCheckpointSaver[Any]]]


class Crash(BaseException):
    """Stands in for the process dying mid-step."""


@pytest.fixture(params=["memory", "sqlite", "postgres-pool", "postgres-connection"])
def open_saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SaverFactory]:
    """Opens the saver the way a caller would, outside Keel (Postgres: tuple rows), on a
    store of its own: the test prunes every thread in it, and a stock saver does not read
    the threads Keel's own savers write (compressed values, short versions)."""
    kind = request.param
    memory = InMemorySaver()
    with ExitStack() as stack:
        url = (
            stack.enter_context(fresh_database("keel_callers"))[0]
            if kind.startswith("postgres")
            else ""
        )
        yield _opener(kind, memory, url, tmp_path)


def _opener(kind: str, memory: InMemorySaver, url: str, tmp_path: Path) -> SaverFactory:

    @asynccontextmanager
    async def make() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        if kind == "memory":
            yield memory  # the same object each time, as a long-lived process would keep it
        elif kind == "sqlite":
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as lite:
                yield lite
        else:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg import AsyncConnection
            from psycopg_pool import AsyncConnectionPool

            if kind == "postgres-pool":
                async with AsyncConnectionPool(url, kwargs={"autocommit": True}) as pool:
                    pooled = AsyncPostgresSaver(cast(Any, pool))  # tuple rows, on purpose
                    await pooled.setup()
                    yield pooled
            else:
                async with await AsyncConnection.connect(url, autocommit=True) as conn:
                    single = AsyncPostgresSaver(cast(Any, conn))
                    await single.setup()
                    yield single

    return make


def calls(*items: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in items])


async def test_a_callers_saver_keeps_effects_exactly_once(
    open_saver: SaverFactory, settings_factory: Callable[..., Settings]
) -> None:
    """`pay` completes, its sibling crashes the step; a new agent on a newly opened saver
    resumes the run and reuses the journaled result instead of paying again."""
    paid: list[str] = []
    crashes: list[int] = []

    @tool
    def pay(amount: int, ctx: ToolContext) -> str:
        """Pay an amount (a side effect)."""
        paid.append(ctx.idempotency_key)
        return f"paid {amount}"

    @tool(idempotent=True)
    async def lookup(x: int) -> str:
        """Crashes the process the first time."""
        await asyncio.sleep(0.05)  # let `pay` finish first
        crashes.append(x)
        if len(crashes) == 1:
            raise Crash()
        return "found"

    tools = ToolRegistry.of([pay, lookup])
    script: list[AIMessage | str] = [
        calls(("pay", {"amount": 5}, "p1"), ("lookup", {"x": 1}, "l1")),
        "done",
    ]
    settings = settings_factory()
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    async with (
        open_saver() as saver,
        open_agent(settings, model=ScriptedModel(script), tools=tools, checkpointer=saver) as agent,
    ):
        with pytest.raises(Crash):
            await agent.arun("pay 5", thread_id=thread_id)
        assert agent.storage is not None and agent.context.journal is agent.storage.journal
        entry = await agent.storage.journal.get(f"{thread_id}:p1")
        assert entry is not None and entry.status == "completed"
    assert paid == [f"{thread_id}:p1"]
    async with (
        open_saver() as saver,
        open_agent(
            settings, model=ScriptedModel(script[1:]), tools=tools, checkpointer=saver
        ) as agent,
    ):
        result = await agent.aresume(thread_id)
        assert result.success and result.output == "done", result.error
        assert agent.storage is not None
        assert paid == [f"{thread_id}:p1"], "the journal kept the payment to one"
        if agent.storage.backend != "memory":
            assert await storage_bytes(agent.storage, thread_id) > 0
        await agent.aprune(RetentionPolicy(keep_last=1))
        assert len(await agent.ahistory(thread_id)) == 1


class OtherSaver(BaseCheckpointSaver[str]):
    """A saver Keel does not know (it delegates to an in-memory one)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = InMemorySaver()

    async def aget_tuple(self, config: Any) -> Any:
        return await self.inner.aget_tuple(config)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        await self.inner.aput_writes(config, writes, task_id, task_path)

    async def alist(self, config: Any, **kwargs: Any) -> Any:
        async for item in self.inner.alist(config, **kwargs):
            yield item

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)


async def test_an_unknown_saver_with_side_effects_is_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    effects: list[int] = []

    @tool
    def pay(amount: int) -> str:
        """Pay an amount (a side effect)."""
        effects.append(amount)
        return "paid"

    @tool(idempotent=True)
    def lookup(x: int) -> str:
        """Read only."""
        return "found"

    settings = settings_factory()
    with pytest.raises(ConfigError) as refused:
        async with open_agent(
            settings, tools=ToolRegistry.of([pay, lookup]), checkpointer=OtherSaver()
        ):
            pass
    assert "OtherSaver" in refused.value.message and "pay" in refused.value.message
    assert "lookup" not in refused.value.message and "journal=" in refused.value.message

    model = ScriptedModel([calls(("lookup", {"x": 1}, "l1")), "read"])
    async with open_agent(
        settings, model=model, tools=ToolRegistry.of([lookup]), checkpointer=OtherSaver()
    ) as agent:
        assert (await agent.arun("look")).output == "read", "read-only tools need no journal"

    journal = MemoryJournal()
    model = ScriptedModel([calls(("pay", {"amount": 3}, "p1")), "paid"])
    async with open_agent(
        settings,
        model=model,
        tools=ToolRegistry.of([pay]),
        checkpointer=OtherSaver(),
        journal=journal,
    ) as agent:
        result = await agent.arun("pay 3", thread_id="t-own")
    assert result.output == "paid" and effects == [3]
    entry = await journal.get("t-own:p1")
    assert entry is not None and entry.status == "completed"


async def test_a_postgres_connection_without_autocommit_is_refused(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(postgres_url) as conn:
        with pytest.raises(ConfigError, match="autocommit"):
            async with open_agent(
                settings_factory(), checkpointer=AsyncPostgresSaver(cast(Any, conn))
            ):
                pass

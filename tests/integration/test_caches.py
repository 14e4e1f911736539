"""The caches inside real runs: model replies, cacheable tools, whole runs; Redis up and down."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from langchain_core.messages import AIMessage, BaseMessage

from keel.cache import Caches, RedisBackend
from keel.config import Settings
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel, Reply
from keel.tools.registry import ToolRegistry, tool
from tests.conftest import require_service

pytestmark = pytest.mark.asyncio

REDIS_URL = "redis://127.0.0.1:6379/0"
PRICE = {"scripted:mid": {"input": 1.0, "output": 4.0}}


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        require_service("Redis", exc)
    namespace = f"keeltest-{uuid.uuid4().hex[:10]}"
    yield namespace
    for key in client.scan_iter(match=f"{namespace}:*"):
        client.delete(key)
    client.close()


class Counted:
    def __init__(self) -> None:
        self.tool_runs = 0


@pytest.fixture
def counted() -> Counted:
    return Counted()


@pytest.fixture
def registry(counted: Counted) -> ToolRegistry:
    @tool(cacheable=True)
    def price_of(sku: str) -> str:
        """The price of a product."""
        counted.tool_runs += 1
        return f"{sku} costs 12.50"

    return ToolRegistry.of([price_of])


def shopper(messages: list[BaseMessage], info: CallInfo) -> Reply:
    """Asks the tool once, then answers with what it returned."""
    results = [m for m in messages if m.type == "tool"]
    if not results:
        return AIMessage(
            content="", tool_calls=[{"name": "price_of", "args": {"sku": "A1"}, "id": "c1"}]
        )
    return f"It costs {str(results[-1].content).split()[-1]}."


def settings_with(settings_factory: Callable[..., Settings], **cache: Any) -> Settings:
    cache.setdefault("model_responses", True)
    return settings_factory(model="scripted:mid", pricing=PRICE, cache=cache)


async def test_repeated_question_is_answered_from_the_model_cache(
    settings_factory: Callable[..., Settings], registry: ToolRegistry, counted: Counted
) -> None:
    model = FunctionModel(fn=shopper)
    settings = settings_with(settings_factory)
    async with open_agent(settings, model=model, tools=registry) as agent:
        first = await agent.arun("What does A1 cost?", tenant="acme")
        second = await agent.arun("What does A1 cost?", tenant="acme")
        other = await agent.arun("What does A1 cost?", tenant="globex")
        assert agent.context.caches is not None
        hits = dict(agent.context.caches.hits)
    assert first.output == second.output == other.output == "It costs 12.50."
    assert first.metadata.total_cost > 0
    assert second.metadata.total_cost == 0 and second.metadata.total_tokens == 0
    assert model.calls == 4  # 2 for acme's first run, 0 for its second, 2 for globex
    assert counted.tool_runs == 2  # the tool cache is tenant-scoped too
    assert hits == {"model": 2, "tool": 1}
    assert other.metadata.total_cost == pytest.approx(first.metadata.total_cost)


async def test_no_model_cache_when_sampling_is_not_deterministic(
    settings_factory: Callable[..., Settings],
) -> None:
    model = FunctionModel(fn=lambda m, i: f"reply {i.index}")
    settings = settings_factory(
        model="scripted:mid", temperature=0.7, cache={"model_responses": True}
    )
    async with open_agent(settings, model=model, tools=ToolRegistry()) as agent:
        a = await agent.arun("Same question")
        b = await agent.arun("Same question")
    assert (a.output, b.output) == ("reply 0", "reply 1")


async def test_failed_tool_results_are_not_cached(
    settings_factory: Callable[..., Settings],
) -> None:
    runs: list[int] = []

    @tool(cacheable=True, transient=(ValueError,))
    def flaky(sku: str) -> str:
        """Fails the first time."""
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("warehouse timeout")
        return "ok"

    def ask(messages: list[BaseMessage], info: CallInfo) -> Reply:
        results = [m for m in messages if m.type == "tool"]
        if len(results) < 2:
            cid = f"c{len(results)}"
            return AIMessage(
                content="", tool_calls=[{"name": "flaky", "args": {"sku": "A"}, "id": cid}]
            )
        return f"got {results[-1].content}"

    settings = settings_with(settings_factory)
    async with open_agent(
        settings, model=FunctionModel(fn=ask), tools=ToolRegistry.of([flaky])
    ) as agent:
        result = await agent.arun("Check A twice")
    assert len(runs) == 2 and result.output == "got ok"


async def test_whole_run_cache_answers_in_milliseconds(
    settings_factory: Callable[..., Settings], registry: ToolRegistry
) -> None:
    model = FunctionModel(fn=shopper)
    settings = settings_with(settings_factory, runs=True)
    async with open_agent(settings, model=model, tools=registry) as agent:
        first = await agent.arun("What does A1 cost?")
        started = time.perf_counter()
        again = await agent.arun("  what does a1 COST ")
        elapsed = time.perf_counter() - started
        elsewhere = await agent.arun("What does A1 cost?", tenant="globex")
    assert again.success and again.output == first.output
    assert again.metadata.cache == "hit" and again.metadata.model_calls == 0
    assert again.metadata.cached_from_run == first.metadata.run_id
    assert again.thread_id != first.thread_id
    assert elapsed < 0.05
    assert elsewhere.metadata.cache is None
    assert model.calls == 4


async def test_failed_runs_are_not_cached(settings_factory: Callable[..., Settings]) -> None:
    model = FunctionModel(fn=lambda m, i: ConnectionError("down"))
    settings = settings_factory(
        model="scripted:mid", cache={"runs": True}, limits={"max_model_attempts": 2}
    )
    async with open_agent(settings, model=model, tools=ToolRegistry()) as agent:
        failed = await agent.arun("Hello")
        calls = model.calls
        again = await agent.arun("Hello")
        assert agent.context.caches is not None
        run_hits = agent.context.caches.hits["run"]
    assert not failed.success and not again.success
    assert again.metadata.cache is None and run_hits == 0
    assert model.calls > calls


async def test_caches_shared_through_the_real_redis(
    settings_factory: Callable[..., Settings], registry: ToolRegistry, redis_namespace: str
) -> None:
    settings = settings_factory(
        model="scripted:mid",
        redis_url=REDIS_URL,
        cache={"backend": "redis", "runs": True, "model_responses": True},
    )
    first_model, second_model = FunctionModel(fn=shopper), FunctionModel(fn=shopper)
    caches = Caches(RedisBackend(REDIS_URL, namespace=redis_namespace), settings.cache)
    async with open_agent(settings, model=first_model, tools=registry, caches=caches) as agent:
        first = await agent.arun("What does A1 cost?")
    # a second process: new agent, new model instance, same Redis
    caches = Caches(RedisBackend(REDIS_URL, namespace=redis_namespace), settings.cache)
    async with open_agent(settings, model=second_model, tools=registry, caches=caches) as agent:
        again = await agent.arun("what does A1 cost")
    assert first.success and again.output == first.output
    assert again.metadata.cache == "hit" and second_model.calls == 0
    client = redis.Redis.from_url(REDIS_URL)
    keys = [k.decode() for k in client.scan_iter(match=f"{redis_namespace}:*")]
    client.close()
    assert {k.split(":")[1] for k in keys} == {"model", "tool", "run"}
    assert all(k.split(":")[2] == "default" for k in keys)


async def test_redis_outage_never_fails_a_run(
    settings_factory: Callable[..., Settings], registry: ToolRegistry
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    settings = settings_factory(
        model="scripted:mid",
        redis_url=url,
        cache={"backend": "redis", "runs": True, "model_responses": True},
        cost={"tenant_daily_usd": 5.0},
    )
    model = FunctionModel(fn=shopper)
    async with open_agent(settings, model=model, tools=registry) as agent:
        started = time.perf_counter()
        results = [await agent.arun("What does A1 cost?") for _ in range(3)]
        elapsed = time.perf_counter() - started
        backend = agent.context.caches.backend if agent.context.caches else None
    assert all(r.success and r.output == "It costs 12.50." for r in results)
    assert model.calls == 6  # no cache: every run calls the model
    assert isinstance(backend, RedisBackend) and backend.failures >= 1
    assert elapsed < 3.0


async def test_identical_concurrent_questions_run_once(
    settings_factory: Callable[..., Settings], registry: ToolRegistry, counted: Counted
) -> None:
    import asyncio

    model = FunctionModel(fn=shopper, latency_s=0.05)
    settings = settings_with(settings_factory, runs=True)
    async with open_agent(settings, model=model, tools=registry) as agent:
        results = await asyncio.gather(*(agent.arun("What does A1 cost?") for _ in range(5)))
    assert [r.output for r in results] == ["It costs 12.50."] * 5
    assert sum(1 for r in results if r.metadata.cache == "hit") == 4
    assert model.calls == 2 and counted.tool_runs == 1

"""The degradation chain over real HTTP: another tier, a direct answer, a clean failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from keel.config import Settings
from keel.errors import ErrorCode
from keel.runtime import open_agent
from keel.testing.chaos import ChaosServer, FaultPlan
from keel.testing.chaos_tasks import arithmetic_tasks, is_correct, solve_task
from keel.tools import calculator
from keel.tools.registry import ToolRegistry

TASK = arithmetic_tasks(1, seed=9)[0]
TIERS = {"standard": "openai:chaos", "simple": "openai:chaos-mini"}


@pytest.fixture
def chaos() -> Iterator[ChaosServer]:
    with ChaosServer(solve_task, faults=FaultPlan()) as server:
        yield server


@pytest.fixture
def http_agent(
    settings_factory: Callable[..., Settings], checkpoint_url: str, chaos: ChaosServer
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    def make(**overrides: Any) -> AbstractAsyncContextManager[Any]:
        limits = {"model_timeout_s": 1, "max_model_attempts": 2, **overrides.pop("limits", {})}
        settings = settings_factory(
            model="openai:chaos",
            openai_base_url=chaos.base_url,
            openai_api_key="test-key",
            checkpoint_url=checkpoint_url,
            cost={"routing": False},
            limits=limits,
            **overrides,
        )
        return open_agent(settings, tools=ToolRegistry.of([calculator]))

    return make


def rows(result: Any) -> list[tuple[str, str | None, str | None]]:
    steps = result.metadata.trace
    return [(s["node"], s["signal"], s["error_code"]) for s in steps if s["node"] != "route"]


async def test_model_failure_moves_to_the_next_tier(http_agent: Any, chaos: ChaosServer) -> None:
    chaos.force("unauthorized")
    async with http_agent(model_tiers=TIERS) as agent:
        result = await agent.arun(TASK.question)
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and is_correct(TASK, result.output)
    assert rows(result)[:3] == [
        ("reason", "degrade", "model_rejected"),
        ("fallback", "downgrade", "model_rejected"),
        ("reason", "tools", None),
    ]
    downgrade = next(s for s in result.metadata.trace if s["node"] == "fallback")
    assert "tier standard failed (model_rejected" in downgrade["observation"]
    assert downgrade["action"] == "simple"
    assert chaos.stats.models == ["chaos", "chaos-mini", "chaos-mini"]
    assert state["tried_tiers"] == ["standard", "simple"] and state["tier"] == "simple"


async def test_open_breaker_skips_its_tier_without_calling(
    http_agent: Any, chaos: ChaosServer
) -> None:
    breaker = {"min_calls": 2, "failure_rate": 0.5, "open_s": 60}
    chaos.force("unavailable", "unavailable")
    async with http_agent(model_tiers=TIERS, breaker=breaker) as agent:
        first = await agent.arun(TASK.question)
        assert first.success, "the first run already finished on the cheaper tier"
        chaos.reset()
        second = await agent.arun(TASK.question)
    assert second.success and is_correct(TASK, second.output)
    assert rows(second)[:2] == [
        ("reason", "degrade", "breaker_open"),
        ("fallback", "downgrade", "breaker_open"),
    ]
    assert "chaos" not in chaos.stats.models, "the open breaker's model got no request"


async def test_every_tier_down_ends_in_a_clean_failure(http_agent: Any, chaos: ChaosServer) -> None:
    breaker = {"min_calls": 2, "failure_rate": 0.5, "open_s": 60}
    chaos.force(*["unavailable"] * 4)
    async with http_agent(model_tiers=TIERS, breaker=breaker) as agent:
        first = await agent.arun(TASK.question)
        requests = chaos.stats.requests
        second = await agent.arun(TASK.question)
    assert not first.success and first.error_code == ErrorCode.MODEL_UNAVAILABLE
    assert [r for r in rows(first) if r[0] == "fallback"] == [
        ("fallback", "downgrade", "model_unavailable"),
        ("fallback", None, "model_unavailable"),
    ]
    assert not second.success and second.error_code == ErrorCode.BREAKER_OPEN
    last = [s for s in second.metadata.trace if s["node"] == "fallback"][-1]
    assert "skipped simple (breaker open)" in last["observation"]
    assert chaos.stats.requests == requests, "with every breaker open nothing was sent"
    assert second.output.startswith("I could not complete this request (breaker_open)")


async def test_context_too_long_gets_a_direct_answer_without_tools(
    http_agent: Any, chaos: ChaosServer
) -> None:
    chaos.force("context_too_long")
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
    assert rows(result) == [
        ("reason", "degrade", "context_too_long"),
        ("fallback", "direct_answer", None),
        ("finish", None, None),
    ]
    assert result.success
    assert result.output == "I cannot compute that reliably without the calculator."
    direct = next(s for s in result.metadata.trace if s["node"] == "fallback")
    assert "answering without tools on openai:chaos" in direct["observation"]


async def test_retry_after_past_the_deadline_moves_to_another_tier(
    http_agent: Any, chaos: ChaosServer
) -> None:
    chaos.reset(FaultPlan(retry_after_s=30))
    chaos.force("rate_limit")
    async with http_agent(model_tiers=TIERS, limits={"run_timeout_s": 5}) as agent:
        result = await agent.arun(TASK.question)
    assert result.success and is_correct(TASK, result.output)
    assert rows(result)[:2] == [
        ("reason", "degrade", "model_rate_limited"),
        ("fallback", "downgrade", "model_rate_limited"),
    ]
    assert chaos.stats.models[0] == "chaos" and set(chaos.stats.models[1:]) == {"chaos-mini"}


async def test_chain_ends_even_when_routing_escalates_back(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    from keel.testing.scripted import ScriptedModel

    standard = ScriptedModel([ConnectionError("down")] * 10, model_name="standard")
    simple = ScriptedModel([ConnectionError("down")] * 10, model_name="simple")
    settings = settings_factory(
        checkpoint_url=checkpoint_url,
        model_tiers={"simple": "scripted:sales"},
        cost={"routing": False, "escalate_after": 1},
        limits={"max_model_attempts": 2},
    )
    async with open_agent(
        settings, tools=ToolRegistry.of([]), tier_models={"standard": standard, "simple": simple}
    ) as agent:
        result = await agent.arun("Anything?")
    assert not result.success and result.error_code == ErrorCode.MODEL_UNAVAILABLE
    downgrades = [s for s in result.metadata.trace if s["signal"] == "downgrade"]
    assert len(downgrades) == 1, "each tier is switched to at most once"
    assert standard.calls + simple.calls <= 6

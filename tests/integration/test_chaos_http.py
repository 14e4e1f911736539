"""Every fault kind, over real HTTP: langchain-openai → chaos server → the graph's path.

Each test forces exact faults on the chaos server and asserts the edge the graph took
(retry, repair, an error observation, degrade) and how the run ended, on every saver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from keel.config import Settings
from keel.errors import ErrorCode
from keel.runtime import open_agent
from keel.testing.chaos import ChaosServer, FaultKind, FaultPlan
from keel.testing.chaos_tasks import arithmetic_tasks, is_correct, solve_task
from keel.tools import calculator
from keel.tools.registry import ToolRegistry

pytestmark = pytest.mark.asyncio

TASK = arithmetic_tasks(1, seed=3)[0]


@pytest.fixture
def chaos() -> Iterator[ChaosServer]:
    with ChaosServer(solve_task, faults=FaultPlan(hang_s=5.0)) as server:
        yield server


@pytest.fixture
def http_agent(
    settings_factory: Callable[..., Settings], checkpoint_url: str, chaos: ChaosServer
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """`async with http_agent(**settings) as agent:` — an `openai:` agent on the chaos server."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[Any]:
        limits = {"model_timeout_s": 0.5, **overrides.pop("limits", {})}
        settings = settings_factory(
            model="openai:chaos",
            openai_base_url=chaos.base_url,
            openai_api_key="test-key",
            checkpoint_url=checkpoint_url,
            limits=limits,
            **overrides,
        )
        return open_agent(settings, tools=ToolRegistry.of([calculator]))

    return make


def reason_path(result: Any) -> list[tuple[str | None, str | None]]:
    return [
        (s["signal"], s["error_code"]) for s in result.metadata.trace if s["node"] == "reason"
    ]


RETRIED: list[tuple[FaultKind, ErrorCode]] = [
    ("rate_limit", ErrorCode.MODEL_RATE_LIMITED),
    ("server_error", ErrorCode.MODEL_UNAVAILABLE),
    ("unavailable", ErrorCode.MODEL_UNAVAILABLE),
    ("reset", ErrorCode.MODEL_UNAVAILABLE),
    ("hang", ErrorCode.MODEL_TIMEOUT),
]


@pytest.mark.parametrize(("fault", "code"), RETRIED)
async def test_transport_faults_are_retried(
    http_agent: Any, chaos: ChaosServer, fault: FaultKind, code: ErrorCode
) -> None:
    chaos.force(fault)
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and is_correct(TASK, result.output), result.output
    assert reason_path(result) == [("retry", str(code)), ("tools", None), ("answer", None)]
    assert [e["kind"] for e in state["errors"]] == ["retryable"]
    assert chaos.stats.requests == 3 and chaos.stats.faults[fault] == 1


async def test_rate_limit_waits_at_least_retry_after(http_agent: Any, chaos: ChaosServer) -> None:
    chaos.reset(FaultPlan(retry_after_s=0.3))
    chaos.force("rate_limit")
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
    retry = next(s for s in result.metadata.trace if s["signal"] == "retry")
    assert "retrying in 0.30s" in retry["observation"]
    assert result.success


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("malformed_args", ErrorCode.MALFORMED_OUTPUT),
        ("empty", ErrorCode.MALFORMED_OUTPUT),
        ("truncated", ErrorCode.OUTPUT_TRUNCATED),
    ],
)
async def test_bad_replies_are_repaired(
    http_agent: Any, chaos: ChaosServer, fault: FaultKind, code: ErrorCode
) -> None:
    chaos.force(fault)
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
    assert result.success and is_correct(TASK, result.output)
    assert reason_path(result) == [("repair", str(code)), ("tools", None), ("answer", None)]


async def test_unknown_tool_becomes_an_observation(http_agent: Any, chaos: ChaosServer) -> None:
    chaos.force("unknown_tool")
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
    assert result.success and is_correct(TASK, result.output)
    acts = [s for s in result.metadata.trace if s["node"] == "act"]
    assert acts[0]["error_code"] == ErrorCode.UNKNOWN_TOOL
    assert "Available tools: calculator" in acts[0]["observation"]
    assert acts[1]["error_code"] is None


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("unauthorized", ErrorCode.MODEL_REJECTED),
    ],
)
async def test_degradable_provider_errors_skip_retries(
    http_agent: Any, chaos: ChaosServer, fault: FaultKind, code: ErrorCode
) -> None:
    chaos.force(fault)
    async with http_agent() as agent:
        result = await agent.arun(TASK.question)
    assert not result.success and result.error_code == code
    assert reason_path(result)[0] == ("degrade", str(code))
    assert chaos.stats.requests == 1, "a degradable error is not retried"
    assert result.output.startswith("I could not complete this request")


async def test_persistent_outage_ends_in_a_clean_failure(
    http_agent: Any, chaos: ChaosServer
) -> None:
    chaos.force("unavailable", "reset", "server_error")
    async with http_agent(limits={"max_model_attempts": 3}) as agent:
        result = await agent.arun(TASK.question)
    assert not result.success and result.error_code == ErrorCode.MODEL_UNAVAILABLE
    assert [s for s, _ in reason_path(result)] == ["retry", "retry", "degrade"]
    assert "failed 3 times" in (result.error or "")
    assert [s["node"] for s in result.metadata.trace][-2:] == ["fallback", "finish"]


async def test_retry_after_past_the_deadline_degrades_at_once(
    http_agent: Any, chaos: ChaosServer
) -> None:
    chaos.reset(FaultPlan(retry_after_s=30))
    chaos.force("rate_limit")
    async with http_agent(limits={"run_timeout_s": 5}) as agent:
        result = await agent.arun(TASK.question)
    assert not result.success and result.error_code == ErrorCode.MODEL_RATE_LIMITED
    assert "would pass the deadline" in (result.error or "")
    assert chaos.stats.requests == 1


async def test_open_breaker_degrades_without_calling(http_agent: Any, chaos: ChaosServer) -> None:
    chaos.force("unavailable", "unavailable")
    breaker = {"min_calls": 2, "failure_rate": 0.5, "open_s": 60}
    async with http_agent(limits={"max_model_attempts": 2}, breaker=breaker) as agent:
        first = await agent.arun(TASK.question)
        assert await agent.context.resilience.breaker_state("model:openai:chaos") == "open"
        second = await agent.arun(TASK.question)
    assert not first.success and first.error_code == ErrorCode.MODEL_UNAVAILABLE
    assert chaos.stats.requests == 2, "the open breaker sent nothing"
    assert not second.success and second.error_code == ErrorCode.BREAKER_OPEN
    assert reason_path(second) == [("degrade", str(ErrorCode.BREAKER_OPEN))]
    assert second.metadata.model_calls <= 1


async def test_own_request_rate_limit_degrades_without_calling(
    http_agent: Any, chaos: ChaosServer
) -> None:
    two_step = next(t for t in arithmetic_tasks(4, seed=3) if t.steps == 2)
    rates = {"model_requests_per_minute": 2, "max_wait_s": 0.2}
    async with http_agent(rate_limits=rates) as agent:
        result = await agent.arun(two_step.question)
    assert not result.success and result.error_code == ErrorCode.RATE_LIMITED
    assert chaos.stats.requests == 2, "the third call waited for the window, then gave up"
    assert reason_path(result)[-1] == ("degrade", str(ErrorCode.RATE_LIMITED))

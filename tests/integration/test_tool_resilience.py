"""Tool failures: transient retries as graph steps, breakers, and timeouts (thread, process)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from keel.errors import ErrorCode, ToolDefinitionError
from keel.resilience.isolation import run_in_process
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool
from tests.integration import _isolated_tools


class WarehouseBusy(Exception):
    """The warehouse API's own 'try again later'."""


def call(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "c1"}])


def use_then_answer(name: str, args: dict[str, Any]) -> FunctionModel:
    """Calls the tool once, then answers with whatever came back."""

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        return f"result: {results[-1].content}" if results else call(name, args)

    return FunctionModel(fn=fn)


def path(result: Any) -> list[tuple[str, str | None]]:
    return [(s["node"], s["signal"]) for s in result.metadata.trace]


def flaky_stock(fail_times: int, *, idempotent: bool = True) -> tuple[Any, list[str]]:
    seen: list[str] = []

    @tool(idempotent=idempotent, transient=(WarehouseBusy,))
    def stock(sku: str) -> str:
        """Units in stock for a SKU."""
        seen.append(sku)
        if len(seen) <= fail_times:
            raise WarehouseBusy("503 from the warehouse API")
        return "42"

    return stock, seen


async def test_transient_tool_failure_is_retried_as_graph_steps(agent_factory: Any) -> None:
    stock, seen = flaky_stock(2)
    model = use_then_answer("stock", {"sku": "A1"})
    async with agent_factory(model, tools=ToolRegistry.of([stock])) as agent:
        result = await agent.arun("How many A1 in stock?")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == "result: 42"
    assert seen == ["A1", "A1", "A1"] and model.calls == 2, "the retry did not ask the model"
    assert path(result) == [
        ("reason", "tools"),
        ("act", None),
        ("observe", "retry"),
        ("act", None),
        ("observe", "retry"),
        ("act", "continue"),  # the call worked: act closes the cycle, no observe step
        ("reason", "answer"),
        ("finish", None),
    ]
    tool_messages = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["42"], "the retry replaced the error"
    assert [e["code"] for e in state["errors"]] == ["tool_failed", "tool_failed"]
    assert state["tool_attempt"] == 0 and state["tool_retry"] is None


async def test_tool_retries_exhausted_leave_the_error_to_the_model(agent_factory: Any) -> None:
    stock, seen = flaky_stock(99)
    model = use_then_answer("stock", {"sku": "A1"})
    async with agent_factory(
        model, tools=ToolRegistry.of([stock]), limits={"max_tool_attempts": 2}
    ) as agent:
        result = await agent.arun("How many A1 in stock?")
    assert len(seen) == 2
    assert "WarehouseBusy" in result.output
    assert [s for n, s in path(result) if n in ("act", "observe")] == [None, "retry", "continue"]


async def test_non_idempotent_tool_is_not_rerun(agent_factory: Any) -> None:
    stock, seen = flaky_stock(1, idempotent=False)
    model = use_then_answer("stock", {"sku": "A1"})
    async with agent_factory(model, tools=ToolRegistry.of([stock])) as agent:
        result = await agent.arun("How many A1 in stock?")
    assert seen == ["A1"], "a call with side effects is never repeated behind the model's back"
    assert "retry" not in [s for _, s in path(result)]


async def test_open_tool_breaker_degrades_without_calling(agent_factory: Any) -> None:
    stock, seen = flaky_stock(99)
    model = use_then_answer("stock", {"sku": "A1"})
    breaker = {"min_calls": 2, "failure_rate": 0.5, "open_s": 60}
    async with agent_factory(
        model, tools=ToolRegistry.of([stock]), breaker=breaker, limits={"max_tool_attempts": 5}
    ) as agent:
        result = await agent.arun("How many A1 in stock?")
    assert len(seen) == 2, "the third attempt met the open breaker and was not made"
    assert not result.success and result.error_code == ErrorCode.BREAKER_OPEN
    assert path(result)[-3:] == [("observe", "degrade"), ("fallback", None), ("finish", None)]


async def test_hung_sync_tool_is_abandoned_at_its_timeout(agent_factory: Any) -> None:
    @tool(timeout_s=0.2)
    def slow_report(day: str) -> str:
        """A report that blocks far longer than its timeout."""
        time.sleep(1.2)
        return "late"

    model = use_then_answer("slow_report", {"day": "mon"})
    started = time.perf_counter()
    async with agent_factory(model, tools=ToolRegistry.of([slow_report])) as agent:
        result = await agent.arun("Report?")
    assert time.perf_counter() - started < 1.0
    assert "timed out" in result.output
    act = next(s for s in result.metadata.trace if s["node"] == "act")
    assert act["error_code"] == ErrorCode.TOOL_TIMEOUT


async def test_process_isolated_tool_is_killed_at_its_timeout(
    settings_factory: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    model = use_then_answer("stuck", {"pid_file": str(pid_file)})
    tools = ToolRegistry.of([_isolated_tools.stuck])
    async with open_agent(settings_factory(), model=model, tools=tools) as agent:
        result = await agent.arun("Run the stuck job")
    assert "timed out" in result.output
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_process_isolated_tool_returns_its_result() -> None:
    out = await run_in_process(_isolated_tools.whoami.func, {"label": "x"})
    label, pid = out.split(":")
    assert label == "x" and int(pid) != os.getpid()


async def test_cancelling_a_process_call_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        run_in_process(_isolated_tools.stuck.func, {"pid_file": str(pid_file)})
    )
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_process_isolation_needs_an_importable_function() -> None:
    with pytest.raises(ToolDefinitionError, match="module level"):

        @tool(isolation="process")
        def local(x: int) -> int:
            """Defined inside a test: a child process could not import it."""
            return x


async def test_chaos_tool_faults_take_the_graph_paths(agent_factory: Any) -> None:
    from keel.testing.chaos import chaos_tool
    from keel.tools import calculator

    flaky = chaos_tool(calculator, rate=0.0, script=["error", "latency", None])
    model = use_then_answer("calculator", {"expression": "6*7"})
    async with agent_factory(model, tools=ToolRegistry.of([flaky])) as agent:
        result = await agent.arun("What is 6*7?")
    assert result.success and result.output == "result: 42"
    assert [s for n, s in path(result) if n in ("act", "observe")] == [None, "retry", "continue"]

    hung = chaos_tool(replace(calculator, timeout_s=0.2), rate=0.0, script=["hang"], hang_s=5)
    model = use_then_answer("calculator", {"expression": "6*7"})
    async with agent_factory(model, tools=ToolRegistry.of([hung])) as agent:
        result = await agent.arun("What is 6*7?")
    acts = [s for s in result.metadata.trace if s["node"] == "act"]
    assert [a["error_code"] for a in acts] == [ErrorCode.TOOL_TIMEOUT, None]
    assert acts[0]["ms"] < 1000 and result.output == "result: 42"

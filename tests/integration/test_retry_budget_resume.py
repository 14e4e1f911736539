"""Retry counters and the three timeout levels are state: they survive a resume."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from keel.errors import ErrorCode
from keel.graphs import build_agent_graph
from keel.testing.scripted import CallInfo, FunctionModel, ScriptedModel
from keel.tools.registry import ToolRegistry, tool


async def test_resumed_run_keeps_its_retry_budget(agent_factory: Any) -> None:
    model = ScriptedModel([ConnectionError("reset")] * 3)
    async with agent_factory(model, limits={"max_model_attempts": 2}) as agent:
        paused = build_agent_graph().compile(
            checkpointer=agent.graph.checkpointer, interrupt_after=["reason"]
        )
        config = agent.config("t-retry")
        await paused.ainvoke(agent.start_state("Anything"), config, context=agent.context)
        mid = (await agent.graph.aget_state(config)).values
        assert mid["model_attempt"] == 1 and mid["retry_delay_s"] is not None
        result = await agent.aresume("t-retry")  # a new process would do the same
        state = (await agent.graph.aget_state(config)).values
    assert model.calls == 2, "the resumed run did not start its retries over"
    assert not result.success and result.error_code == ErrorCode.MODEL_UNAVAILABLE
    assert [e["attempt"] for e in state["errors"]] == [1, 2]


async def test_resumed_run_keeps_its_absolute_deadline(agent_factory: Any) -> None:
    model = ScriptedModel([ConnectionError("reset"), "never reached"])
    async with agent_factory(model, limits={"run_timeout_s": 0.3}) as agent:
        paused = build_agent_graph().compile(
            checkpointer=agent.graph.checkpointer, interrupt_after=["reason"]
        )
        config = agent.config("t-deadline")
        await paused.ainvoke(agent.start_state("Anything"), config, context=agent.context)
        deadline = (await agent.graph.aget_state(config)).values["deadline"]
        await asyncio.sleep(0.4)
        result = await agent.aresume("t-deadline")
        state = (await agent.graph.aget_state(config)).values
    assert state["deadline"] == deadline
    assert not result.success and result.error_code == ErrorCode.DEADLINE_EXCEEDED
    assert model.calls == 1


async def test_iteration_time_limit_cuts_a_slow_tool(agent_factory: Any) -> None:
    @tool(timeout_s=30)
    async def report(day: str) -> str:
        """A report that takes far longer than one iteration may."""
        await asyncio.sleep(5)
        return "done"

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        if any(isinstance(m, ToolMessage) for m in messages):
            return "The report did not finish in time."
        return AIMessage(
            content="", tool_calls=[{"name": "report", "args": {"day": "mon"}, "id": "r1"}]
        )

    async with agent_factory(
        FunctionModel(fn=fn), tools=ToolRegistry.of([report]), limits={"iteration_timeout_s": 0.3}
    ) as agent:
        result = await agent.arun("Make the report")
    act = next(s for s in result.metadata.trace if s["node"] == "act")
    assert act["error_code"] == ErrorCode.TOOL_TIMEOUT
    assert act["ms"] < 1000, "the tool was cut at the iteration's deadline, not its own 30 s"
    assert result.success

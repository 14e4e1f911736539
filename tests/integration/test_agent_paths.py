"""Every path through the agent graph, on memory, SQLite and Postgres savers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.errors import ErrorCode, ModelCallError, ThreadNotFoundError, ToolFatalError, UsageError
from keel.nodes import DIRECT_ANSWER_MAX_TOKENS
from keel.testing.scripted import CallInfo, FunctionModel, ScriptedModel
from keel.tools.registry import ToolRegistry, tool

pytestmark = pytest.mark.asyncio


def call(name: str, args: dict[str, Any], cid: str = "c1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": cid}])


def nodes(result: Any) -> list[str]:
    return [s["node"] for s in result.metadata.trace]


def signals(result: Any) -> list[str | None]:
    return [s["signal"] for s in result.metadata.trace if s["node"] == "reason"]


class Counter:
    """Counts calls of the test tools so a test can assert what really ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def registry(counter: Counter) -> ToolRegistry:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        counter.calls.append(("add", (a, b)))
        return a + b

    @tool
    def broken(x: str) -> str:
        """A tool whose backend is gone."""
        counter.calls.append(("broken", x))
        raise ToolFatalError("the warehouse database is unreachable")

    @tool(timeout_s=0.05)
    async def slow(x: str) -> str:
        """A tool that takes too long."""
        counter.calls.append(("slow", x))
        await asyncio.sleep(5)
        return x

    return ToolRegistry.of([add, broken, slow])


async def test_direct_answer(agent_factory: Any) -> None:
    model = ScriptedModel(["Paris is the capital of France."])
    async with agent_factory(model) as agent:
        result = await agent.arun("What is the capital of France?")
    assert result.success and result.error is None
    assert result.output == "Paris is the capital of France."
    assert nodes(result) == ["reason", "finish"]
    assert result.metadata.iterations == 1
    assert result.metadata.total_tokens > 0
    assert model.calls == 1


async def test_tool_call_then_answer(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    model = ScriptedModel([call("add", {"a": 2, "b": 3}), "2 + 3 = 5"])
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("What is 2 + 3?")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == "2 + 3 = 5"
    assert counter.calls == [("add", (2, 3))]
    assert nodes(result) == ["reason", "act", "reason", "finish"]  # act closed the cycle
    act_step = result.metadata.trace[1]
    assert act_step["action"] == "add" and act_step["observation"] == "5"
    tool_messages = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["5"]
    assert state["usage"]["model_calls"] == 2
    assert state["outcome"]["success"] is True


async def test_malformed_native_output_is_repaired(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    seen: list[list[BaseMessage]] = []

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        seen.append(messages)
        if info.index == 0:
            return AIMessage(
                content="",
                invalid_tool_calls=[
                    {
                        "name": "add",
                        "args": '{"a": 1, "b":',
                        "id": "c1",
                        "error": "bad json",
                        "type": "invalid_tool_call",
                    }
                ],
            )
        return "1 + 2 = 3"

    async with agent_factory(FunctionModel(fn=fn), tools=registry) as agent:
        result = await agent.arun("What is 1 + 2?")
    assert result.success and result.output == "1 + 2 = 3"
    assert signals(result) == ["repair", "answer"]
    assert counter.calls == [], "a malformed call must never run the tool"
    hint = seen[1][-1]
    assert isinstance(hint, HumanMessage) and "not valid JSON" in hint.content
    assert result.metadata.trace[0]["error_code"] == ErrorCode.MALFORMED_OUTPUT


async def test_react_bad_json_is_fed_back_not_guessed(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    seen: list[list[BaseMessage]] = []

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        seen.append(messages)
        replies = [
            'Thought: add them\nAction: add\nAction Input: {"a": 1, "b": }',
            'Thought: add them\nAction: add\nAction Input: {"a": 1, "b": 2}',
            "Thought: done\nFinal Answer: 3",
        ]
        return replies[info.index]

    model = FunctionModel(fn=fn, supports_tool_calling=False)
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("What is 1 + 2?")
    assert agent.context.mode == "react"
    assert result.success and result.output == "3"
    assert counter.calls == [("add", (1, 2))], "bad JSON must not become a call with {}"
    assert signals(result) == ["repair", "tools", "answer"]
    assert "JSON" in str(seen[1][-1].content)
    assert any(str(m.content) == "Observation: 3" for m in seen[2])


async def test_repairs_exhausted_degrade(agent_factory: Any) -> None:
    model = ScriptedModel(["", "", "", ""])
    async with agent_factory(model, limits={"max_repairs": 2}) as agent:
        result = await agent.arun("Say something")
    assert not result.success
    assert result.error_code == ErrorCode.MALFORMED_OUTPUT
    assert signals(result) == ["repair", "repair", "degrade"]
    assert nodes(result)[-2:] == ["fallback", "finish"]
    assert model.calls == 4, "three tries, then one direct answer without tools (also empty)"
    assert "answering without tools" in result.metadata.trace[-2]["observation"]


async def test_model_errors_retry_then_fallback(agent_factory: Any) -> None:
    model = ScriptedModel([ConnectionError("reset by peer")] * 3)
    async with agent_factory(model, limits={"max_model_attempts": 3}) as agent:
        result = await agent.arun("Anything")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert not result.success
    assert result.error_code == ErrorCode.MODEL_UNAVAILABLE
    assert "failed 3 times" in (result.error or "")
    assert result.output.startswith("I could not complete this request")
    assert signals(result) == ["retry", "retry", "degrade"]
    assert nodes(result) == ["reason", "reason", "reason", "fallback", "finish"]
    assert [e["attempt"] for e in state["errors"]] == [1, 2, 3]
    assert all(e["kind"] == "retryable" for e in state["errors"])


async def test_retry_then_success_resets_counter(agent_factory: Any) -> None:
    model = ScriptedModel([TimeoutError(), ConnectionError("reset"), "fine"])
    async with agent_factory(model) as agent:
        result = await agent.arun("Anything")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == "fine"
    assert signals(result) == ["retry", "retry", "answer"]
    assert state["model_attempt"] == 0
    assert [e["code"] for e in state["errors"]] == ["model_timeout", "model_unavailable"]


async def test_degradable_error_skips_retries(agent_factory: Any) -> None:
    model = ScriptedModel([ModelCallError("model not found", kind="degradable")])
    async with agent_factory(model) as agent:
        result = await agent.arun("Anything")
    assert not result.success and model.calls == 1
    assert signals(result) == ["degrade"]


async def test_iteration_limit(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    model = FunctionModel(fn=lambda m, i: call("add", {"a": i.index, "b": 1}, f"c{i.index}"))
    async with agent_factory(model, tools=registry, limits={"max_iterations": 3}) as agent:
        result = await agent.arun("Loop forever")
    assert not result.success
    assert result.error_code == ErrorCode.ITERATION_LIMIT
    assert len(counter.calls) == 3
    assert nodes(result)[-3:] == ["observe", "fallback", "finish"]
    assert "The last result I obtained was: 3" in result.output


async def test_a_repeated_failing_call_stops_the_loop_at_once(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    model = FunctionModel(fn=lambda m, i: call("add", {"a": "one", "b": 2}, f"c{i.index}"))
    async with agent_factory(model, tools=registry, limits={"max_iterations": 8}) as agent:
        result = await agent.arun("1+2?")
    assert not result.success and result.error_code == ErrorCode.ITERATION_LIMIT
    acts = [s for s in result.metadata.trace if s["node"] == "act"]
    assert len(acts) == 3  # the second repeat stops it, not the limit of 8
    assert "repeated a call that had already failed the same way: add(a='one', b=2)" in (
        result.output
    )


async def test_a_call_repeated_after_it_succeeded_or_timed_out_is_made_again(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    twice = [call("add", {"a": 1, "b": 2}), call("add", {"a": 1, "b": 2}, "c2")]
    slow = [call("slow", {"x": "a"}, "c3"), call("slow", {"x": "a"}, "c4")]
    model = ScriptedModel([*twice, *slow, "3"])
    async with agent_factory(model, tools=registry, max_tool_attempts=1) as agent:
        result = await agent.arun("1+2?")
    assert result.success and result.output == "3"
    assert counter.calls == [("add", (1, 2)), ("add", (1, 2)), ("slow", "a"), ("slow", "a")]


async def test_unknown_tool_is_an_observation(agent_factory: Any, registry: ToolRegistry) -> None:
    model = ScriptedModel([call("nope", {}), "Sorry, I cannot do that."])
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("Use a tool")
    assert result.success
    observation = result.metadata.trace[1]["observation"]
    assert "unknown tool 'nope'" in observation and "add" in observation
    assert result.metadata.trace[1]["error_code"] == ErrorCode.UNKNOWN_TOOL


async def test_invalid_arguments_are_an_observation(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    model = ScriptedModel(
        [call("add", {"a": "one", "c": 2}), call("add", {"a": 1, "b": 2}, "c2"), "3"]
    )
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("1+2?")
    assert result.success and result.output == "3"
    first = result.metadata.trace[1]
    assert first["error_code"] == ErrorCode.INVALID_TOOL_ARGS
    assert "a:" in first["observation"] and "b: Field required" in first["observation"]
    assert counter.calls == [("add", (1, 2))]


async def test_unrecoverable_tool_error_degrades(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    model = ScriptedModel([call("broken", {"x": "q"})])
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("Query the warehouse")
    assert not result.success
    assert result.error_code == ErrorCode.TOOL_FAILED
    assert "unreachable" in (result.error or "")
    assert nodes(result) == ["reason", "act", "observe", "fallback", "finish"]
    assert model.calls == 1


async def test_tool_timeout_is_an_observation(agent_factory: Any, registry: ToolRegistry) -> None:
    model = ScriptedModel([call("slow", {"x": "q"}), "It timed out."])
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("Be slow")
    assert result.success
    step = result.metadata.trace[1]
    assert step["error_code"] == ErrorCode.TOOL_TIMEOUT and "timed out" in step["observation"]
    assert step["ms"] < 2000


async def test_run_deadline_degrades(agent_factory: Any, registry: ToolRegistry) -> None:
    @tool
    async def sleepy(x: str) -> str:
        """Sleeps far past the run's deadline."""
        await asyncio.sleep(30)
        return x

    model = ScriptedModel([call("sleepy", {"x": "q"}), "never reached"])
    async with agent_factory(
        model, tools=ToolRegistry.of([sleepy]), limits={"run_timeout_s": 0.5}
    ) as agent:
        result = await agent.arun("Be slow")
    assert not result.success
    assert result.error_code == ErrorCode.DEADLINE_EXCEEDED
    assert model.calls == 1
    assert result.metadata.trace[1]["ms"] < 1000, "the tool is cut off at the run deadline"


class Crash(BaseException):
    """Stands in for the process dying mid-tool."""


async def test_resume_continues_from_last_checkpoint(agent_factory: Any) -> None:
    attempts: list[int] = []

    @tool(idempotent=True)  # safe to repeat; non-idempotent tools are journaled instead
    def flaky_once(x: int) -> int:
        """Crashes the first time it runs."""
        attempts.append(x)
        if len(attempts) == 1:
            raise Crash()
        return x * 10

    model = ScriptedModel([call("flaky_once", {"x": 4}), "40"])
    async with agent_factory(model, tools=ToolRegistry.of([flaky_once])) as agent:
        with pytest.raises(Crash):
            await agent.arun("times ten", thread_id="t-crash")
        stopped = await agent.result("t-crash")
        assert stopped.status == "interrupted" and not stopped.success
        result = await agent.aresume("t-crash")
        again = await agent.aresume("t-crash")
    assert result.success and result.output == "40"
    assert model.calls == 2, "resume must not repeat the finished reason step"
    assert attempts == [4, 4]
    assert again.output == "40" and model.calls == 2


async def test_unknown_thread_and_busy_thread(agent_factory: Any) -> None:
    async with agent_factory(ScriptedModel(["x"])) as agent:
        with pytest.raises(ThreadNotFoundError):
            await agent.aresume("no-such-thread")
        with pytest.raises(UsageError):
            await agent.arun("   ")


async def test_second_question_on_a_thread_keeps_history(agent_factory: Any) -> None:
    def fn(messages: list[BaseMessage], info: CallInfo) -> str:
        asked = [m.content for m in messages if isinstance(m, HumanMessage)]
        return f"{len(asked)} questions so far"

    async with agent_factory(FunctionModel(fn=fn)) as agent:
        first = await agent.arun("one", thread_id="t-conv")
        second = await agent.arun("two", thread_id="t-conv")
    assert first.output == "1 questions so far"
    assert second.output == "2 questions so far"
    assert nodes(second) == ["reason", "finish"], "the trace is the run's own"
    assert first.metadata.run_id != second.metadata.run_id


async def test_usage_is_priced(agent_factory: Any) -> None:
    reply = AIMessage(
        content="ok",
        usage_metadata={"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500},
    )
    async with agent_factory(
        ScriptedModel([reply]), pricing={"scripted:echo": {"input": 2.0, "output": 10.0}}
    ) as agent:
        result = await agent.arun("price me")
    assert result.metadata.total_tokens == 1500
    assert result.metadata.total_cost == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1e6)


async def test_ungrounded_numbers_are_repaired_through_a_tool(
    agent_factory: Any, registry: ToolRegistry, counter: Counter
) -> None:
    """A made-up total is rejected; the model computes it with a tool and answers exactly."""
    replies = [
        call("add", {"a": 1200, "b": 950}),
        "Together they made 2,300.",  # 1200 + 950 is not 2300: appears in no result
        call("add", {"a": 1200, "b": 950}, "c2"),
        "Together they made 2,150.",
    ]
    seen: list[list[BaseMessage]] = []

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        seen.append(messages)
        return replies[info.index]

    async with agent_factory(FunctionModel(fn=fn), tools=registry) as agent:
        result = await agent.arun("What did the two stores make together?")
    assert result.success and result.output == "Together they made 2,150."
    # The answer after the repair's tool call still sees the rejected answer and the reason.
    last_prompt = [str(m.content) for m in seen[-1]]
    assert "Together they made 2,300." in last_prompt
    assert any("2,300 appear in no tool result" in text for text in last_prompt)
    assert signals(result) == ["tools", "repair", "tools", "answer"]
    repair = next(s for s in result.metadata.trace if s["signal"] == "repair")
    assert repair["error_code"] == ErrorCode.UNGROUNDED_ANSWER
    assert "2,300" in repair["observation"]


async def test_grounding_can_be_switched_off(agent_factory: Any, registry: ToolRegistry) -> None:
    model = ScriptedModel([call("add", {"a": 1200, "b": 950}), "Together they made 2,300."])
    async with agent_factory(model, tools=registry, grounded_answers=False) as agent:
        result = await agent.arun("What did the two stores make together?")
    assert result.success and result.output == "Together they made 2,300."


@pytest.mark.parametrize(
    ("direct", "success"),
    [("I cannot tell without the data.", True), ("Revenue was 12,345.67.", False)],
)
async def test_a_direct_answer_must_be_grounded_too(
    agent_factory: Any, registry: ToolRegistry, direct: str, success: bool
) -> None:
    """After repairs run out, the no-tools answer may not invent numbers either."""
    model = ScriptedModel(["", "", "", direct])
    async with agent_factory(model, tools=registry) as agent:
        result = await agent.arun("What was the revenue?")
    assert result.success is success
    if success:
        assert result.output == direct
    else:
        assert result.error_code == ErrorCode.MALFORMED_OUTPUT
        last = [s for s in result.metadata.trace if s["node"] == "fallback"][-1]
        assert "not grounded" in last["observation"] and "12,345.67" in last["observation"]


async def test_a_direct_answer_quoting_a_query_fails_cleanly(agent_factory: Any) -> None:
    """A no-tools answer that only shows the SQL to run is not an answer."""

    @tool(name="sql_query")
    def sql(query: str) -> str:
        """Run a read-only query."""
        return "[]"

    model = ScriptedModel(["", "", "", "Use:\nSELECT SUM(total) FROM orders WHERE month = 10"])
    async with agent_factory(model, tools=ToolRegistry.of([sql])) as agent:
        result = await agent.arun("What was the revenue last month?")
    assert not result.success and result.error_code == ErrorCode.MALFORMED_OUTPUT
    last = [s for s in result.metadata.trace if s["node"] == "fallback"][-1]
    assert "SQL query instead of its result" in last["observation"]


async def test_a_direct_answer_is_bounded_to_a_few_sentences(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    """The no-tools answer after repairs run out asks for at most DIRECT_ANSWER_MAX_TOKENS:
    a small model that repeats itself must not write until `max_tokens` past the deadline."""
    asked: list[dict[str, Any]] = []

    def fn(messages: list[BaseMessage], info: CallInfo) -> str:
        asked.append(info.kwargs)
        return "" if info.index < 3 else "I cannot tell without the data."

    async with agent_factory(FunctionModel(fn=fn), tools=registry) as agent:
        result = await agent.arun("What was the revenue?")
    assert result.success and result.output == "I cannot tell without the data."
    assert [s["signal"] for s in result.metadata.trace if s["node"] == "fallback"] == [
        "direct_answer"
    ]
    assert [a.get("max_tokens") for a in asked] == [None, None, None, DIRECT_ANSWER_MAX_TOKENS]

"""A tool's own exceptions: an observation for the model, retried when the connection
dropped, and fatal only when the tool has a bug."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from keel.errors import ErrorCode
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool


def call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def nodes(result: Any) -> list[str]:
    return [s["node"] for s in result.metadata.trace]


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    if city == "Atlantis":
        raise ValueError("city not found")
    return f"sunny in {city}"


@tool
def geocode(place: str) -> str:
    """The nearest known city to a place."""
    return "Athens"


def other_way() -> FunctionModel:
    """Asks for Atlantis; on an error, geocodes and asks again; then answers with the result."""

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return call("weather", {"city": "Atlantis"}, "c1")
        if len(results) == 1:
            assert "city not found" in str(results[0].content), results[0].content
            return call("geocode", {"place": "Atlantis"}, "c2")
        if len(results) == 2:
            return call("weather", {"city": str(results[1].content)}, "c3")
        return f"answer: {results[-1].content}"

    return FunctionModel(fn=fn)


async def test_a_tool_exception_is_an_observation_the_model_works_around(
    agent_factory: Any,
) -> None:
    model = other_way()
    async with agent_factory(model, tools=ToolRegistry.of([weather, geocode])) as agent:
        result = await agent.arun("Weather in Atlantis?")
    assert result.success, (result.error_code, result.error)
    assert result.output == "answer: sunny in Athens"
    first_act = next(s for s in result.metadata.trace if s["node"] == "act")
    assert first_act["error_code"] == ErrorCode.TOOL_ERROR
    assert "ValueError: city not found" in first_act["observation"]
    assert "fallback" not in nodes(result) and model.calls == 4


async def test_an_undeclared_connection_error_is_retried_then_succeeds(
    agent_factory: Any,
) -> None:
    seen: list[str] = []

    @tool(idempotent=True)
    def stock(sku: str) -> str:
        """Units in stock for a SKU."""
        seen.append(sku)
        if len(seen) == 1:
            raise ConnectionError("connection reset by the warehouse")
        return "42"

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        return f"result: {results[-1].content}" if results else call("stock", {"sku": "A"}, "c1")

    model = FunctionModel(fn=fn)
    async with agent_factory(model, tools=ToolRegistry.of([stock])) as agent:
        result = await agent.arun("Stock of A?")
    assert result.success and result.output == "result: 42"
    assert seen == ["A", "A"] and model.calls == 2, "retried as a graph step, not by the model"
    decided = [s["signal"] for s in result.metadata.trace if s["node"] in ("act", "observe")]
    assert decided == [None, "retry", "continue"]  # the second act closes the cycle


async def test_a_bug_in_a_tool_stays_fatal(agent_factory: Any) -> None:
    @tool
    def buggy(x: str) -> str:
        """A tool with a programming mistake."""
        return x + 1  # type: ignore[operator]

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        return call("buggy", {"x": "q"}, "c1")

    model = FunctionModel(fn=fn)
    async with agent_factory(model, tools=ToolRegistry.of([buggy])) as agent:
        result = await agent.arun("Use the buggy tool")
    assert not result.success and result.error_code == ErrorCode.TOOL_FAILED
    assert "TypeError" in (result.error or "")
    assert model.calls == 1 and "fallback" in nodes(result)


async def test_tool_errors_do_not_open_the_tool_breaker(agent_factory: Any) -> None:
    calls: list[str] = []

    @tool
    def lookup(city: str) -> str:
        """A city's population."""
        calls.append(city)
        raise ValueError(f"{city}: city not found")

    def fn(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        return str(results[-1].content) if results else call("lookup", {"city": "X"}, "c1")

    breaker = {"min_calls": 2, "failure_rate": 0.5, "open_s": 60}
    async with agent_factory(
        FunctionModel(fn=fn), tools=ToolRegistry.of([lookup]), breaker=breaker
    ) as agent:
        results = [await agent.arun(f"Population of X? ({i})") for i in range(4)]
    assert len(calls) == 4, "a tool that answers 'not found' is not a tool that is down"
    assert all(r.success and "city not found" in r.output for r in results)

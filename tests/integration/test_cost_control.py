"""Cost control through the whole graph: routing, escalation, budgets, tenants, compaction.

Every test asserts the decision (the trace's `route` rows, the error code) and the numbers
(model calls per tier, USD against the budget).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from keel.config import Settings
from keel.cost.accounting import estimate_call, estimate_tokens
from keel.errors import ErrorCode
from keel.runtime import Agent, open_agent
from keel.testing.scripted import CallInfo, FunctionModel, Reply
from keel.tools.registry import ToolRegistry, tool

pytestmark = pytest.mark.asyncio

TIERS = {"simple": "scripted:cheap", "standard": "scripted:mid", "complex": "scripted:big"}
PRICES = {
    "scripted:cheap": {"input": 0.1, "output": 0.4},
    "scripted:mid": {"input": 1.0, "output": 4.0},
    "scripted:big": {"input": 10.0, "output": 40.0},
}
EASY = "How many customers are there?"
HARD = "Compare revenue by region year over year and explain why the trend changed"


def answering(name: str, log: list[str]) -> FunctionModel:
    def fn(messages: list[BaseMessage], info: CallInfo) -> Reply:
        log.append(name)
        return f"answer from {name}"

    return FunctionModel(fn=fn, model_name=name)


@pytest.fixture
def open_tiered(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(
        models: dict[str, BaseChatModel], *, tools: Any = None, **overrides: Any
    ) -> AsyncIterator[Agent]:
        overrides.setdefault("checkpoint_url", checkpoint_url)
        overrides.setdefault("model_tiers", TIERS)
        overrides.setdefault("pricing", PRICES)
        settings = settings_factory(**overrides)
        tools = tools if tools is not None else ToolRegistry()
        async with open_agent(settings, tools=tools, tier_models=models) as agent:
            yield agent

    return make


def routes(result: Any) -> list[tuple[str, str]]:
    return [(s["signal"], s["action"]) for s in result.metadata.trace if s["node"] == "route"]


@pytest.mark.parametrize(("question", "tier"), [(EASY, "simple"), (HARD, "complex")])
async def test_router_starts_on_the_tier_the_task_needs(
    open_tiered: Any, question: str, tier: str
) -> None:
    log: list[str] = []
    models = {name: answering(name, log) for name in TIERS}
    async with open_tiered(models) as agent:
        result = await agent.arun(question)
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == f"answer from {tier}"
    assert log == [tier]
    assert routes(result) == [("start", tier)]
    assert state["tier"] == tier and result.metadata.tier == tier
    route = next(s for s in result.metadata.trace if s["node"] == "route")
    assert route["observation"].startswith(f"task looks {tier}")


async def test_escalates_one_tier_after_repeated_malformed_output(open_tiered: Any) -> None:
    log: list[str] = []

    def broken(messages: list[BaseMessage], info: CallInfo) -> Reply:
        log.append("simple")
        return ""  # neither an answer nor a tool call

    models = {
        "simple": FunctionModel(fn=broken),
        "standard": answering("standard", log),
        "complex": answering("complex", log),
    }
    async with open_tiered(models, limits={"max_repairs": 3}) as agent:
        result = await agent.arun(EASY)
    assert result.success and result.output == "answer from standard"
    assert log == ["simple", "simple", "standard"]
    assert routes(result) == [("start", "simple"), ("escalate", "standard")]
    escalate = next(s for s in result.metadata.trace if s["signal"] == "escalate")
    assert "2 malformed replies" in escalate["observation"]
    assert escalate["action_input"] == {"from": "simple", "to": "standard"}


async def test_downgrades_when_the_budget_is_tight(open_tiered: Any) -> None:
    log: list[str] = []
    models = {name: answering(name, log) for name in TIERS}
    # `big` needs ~$0.045 for 1024 completion tokens; `mid` ~$0.0045.
    async with open_tiered(models, cost={"run_usd": 0.01}) as agent:
        result = await agent.arun(HARD)
    assert result.success and log == ["standard"]
    assert routes(result) == [("start", "complex"), ("downgrade", "standard")]
    down = next(s for s in result.metadata.trace if s["signal"] == "downgrade")
    assert "budget" in down["observation"] and "run's budget" in down["observation"]


@pytest.fixture
def looping_tools() -> ToolRegistry:
    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    return ToolRegistry.of([lookup])


async def test_budget_stops_before_overspending_with_the_partial_result(
    open_tiered: Any, looping_tools: ToolRegistry
) -> None:
    """The model under-reports nothing but uses 3x the estimated prompt: the run may only
    overspend by the last call's estimate error, and ends in fallback with what it found."""
    estimates: list[float] = []
    actuals: list[float] = []
    schemas = [t.openai_schema() for t in looping_tools]

    def greedy(messages: list[BaseMessage], info: CallInfo) -> Reply:
        estimate = estimate_call(estimate_tokens(messages, schemas), 1024, _price("mid"))
        prompt = estimate.prompt_tokens * 3
        usage = {"input_tokens": prompt, "output_tokens": 20, "total_tokens": prompt + 20}
        estimates.append(estimate.usd)
        actuals.append((prompt * 1.0 + 20 * 4.0) / 1e6)
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "lookup", "args": {"key": f"k{info.index}"}, "id": f"c{info.index}"}
            ],
            usage_metadata=usage,  # type: ignore[typeddict-item]
        )

    budget = 0.02
    async with open_tiered(
        {"standard": FunctionModel(fn=greedy)},
        tools=looping_tools,
        model_tiers={},
        model="scripted:mid",
        cost={"run_usd": budget},
        limits={"max_iterations": 50},
    ) as agent:
        result = await agent.arun("Look everything up")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert not result.success and result.error_code == ErrorCode.BUDGET_EXCEEDED
    assert "The last result I obtained was: value of k" in result.output
    spent = state["usage"]["cost_usd"]
    assert spent == pytest.approx(sum(actuals))
    assert len(actuals) >= 3
    overspend = spent - budget
    assert overspend <= max(actuals[-1] - estimates[-1], 0) + 1e-9
    assert sum(actuals[:-1]) + estimates[-1] <= budget + 1e-9  # the last call was allowed
    last_tool = [m for m in state["messages"] if isinstance(m, ToolMessage)][-1]
    assert last_tool.content == f"value of k{len(actuals) - 1}"


def _price(tier: str) -> Any:
    from keel.config import ModelPrice

    return ModelPrice(**PRICES[f"scripted:{tier}"])


async def test_model_call_limit_goes_to_fallback(
    open_tiered: Any, looping_tools: ToolRegistry
) -> None:
    def loop(messages: list[BaseMessage], info: CallInfo) -> Reply:
        return AIMessage(
            content="",
            tool_calls=[{"name": "lookup", "args": {"key": "a"}, "id": f"c{info.index}"}],
        )

    model = FunctionModel(fn=loop)
    async with open_tiered(
        {"standard": model},
        tools=looping_tools,
        model_tiers={},
        cost={"run_model_calls": 3},
        cache={"backend": "none"},
    ) as agent:
        result = await agent.arun("Loop")
    assert result.error_code == ErrorCode.BUDGET_EXCEEDED
    assert model.calls == 3
    assert "limit of 3 model calls" in (result.error or "")


async def test_tenant_daily_budget_is_shared_by_its_runs_only(open_tiered: Any) -> None:
    log: list[str] = []

    def heavy(messages: list[BaseMessage], info: CallInfo) -> Reply:
        log.append("standard")
        usage = {"input_tokens": 3000, "output_tokens": 0, "total_tokens": 3000}
        return AIMessage(content="ok", usage_metadata=usage)  # type: ignore[typeddict-item]

    models = {"standard": FunctionModel(fn=heavy)}
    # a call is estimated at ~$0.0042 (1024 completion tokens at $4/1M) and costs $0.003
    async with open_tiered(
        models,
        model_tiers={},
        model="scripted:mid",
        cost={"tenant_daily_usd": 0.005},
        cache={"backend": "none"},
    ) as agent:
        first = await agent.arun("first question", tenant="acme")
        second = await agent.arun("second question", tenant="acme")
        other = await agent.arun("third question", tenant="globex")
    assert first.success and other.success
    assert not second.success and second.error_code == ErrorCode.BUDGET_EXCEEDED
    assert "daily budget" in (second.error or "")
    assert log == ["standard", "standard"]
    assert second.metadata.tenant == "acme"


async def test_compaction_summarizes_with_the_cheapest_tier(
    open_tiered: Any, looping_tools: ToolRegistry
) -> None:
    summaries: list[str] = []
    seen: list[list[BaseMessage]] = []

    def summarizer(messages: list[BaseMessage], info: CallInfo) -> Reply:
        summaries.append(str(messages[-1].content))
        return "Looked up k0..k5; all values are 'value of kN'."

    def worker(messages: list[BaseMessage], info: CallInfo) -> Reply:
        seen.append(messages)
        if info.index < 8:
            return AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "lookup",
                        "args": {"key": f"k{info.index}" + "!" * 300},
                        "id": f"c{info.index}",
                    }
                ],
            )
        return "done"

    async with open_tiered(
        {"simple": FunctionModel(fn=summarizer), "standard": FunctionModel(fn=worker)},
        tools=looping_tools,
        model_tiers={"simple": "scripted:cheap"},
        cost={"routing": False},
        compaction={"max_prompt_tokens": 900, "keep_last": 2},
        limits={"max_iterations": 20},
    ) as agent:
        result = await agent.arun("Look up k0 to k7 and report")
        state = (await agent.graph.aget_state(agent.config(result.thread_id))).values
    assert result.success and result.output == "done"
    assert summaries, "the cheapest tier was never asked to summarize"
    compacts = [s for s in result.metadata.trace if s["signal"] == "compact"]
    assert len(compacts) == len(summaries) and compacts[0]["action"] == "simple"
    assert state["context_summary"] == "Looked up k0..k5; all values are 'value of kN'."
    last_prompt = seen[-1]
    assert any("Looked up k0..k5" in str(m.content) for m in last_prompt)
    assert "Look up k0 to k7 and report" in str(last_prompt[1].content)
    assert len(last_prompt) < len(state["messages"]) + 1
    # the summary's cost is part of the run's
    assert state["usage"]["model_calls"] == len(seen) + len(summaries)


async def test_tier_survives_an_interrupt_and_resume(open_tiered: Any) -> None:
    """The active tier is in the checkpoint: after a human approves a call, the run goes on
    with the tier it was routed to, without routing again."""
    log: list[str] = []

    @tool(requires_approval=True)
    def refund(order: str) -> str:
        """Refund an order (needs a human's approval)."""
        return f"refunded {order}"

    def careful(messages: list[BaseMessage], info: CallInfo) -> Reply:
        log.append("complex")
        if not any(isinstance(m, ToolMessage) for m in messages):
            return AIMessage(
                content="", tool_calls=[{"name": "refund", "args": {"order": "A7"}, "id": "r1"}]
            )
        return "Refunded A7 after comparing the orders."

    models = {"simple": answering("simple", log), "standard": answering("standard", log)}
    models["complex"] = FunctionModel(fn=careful)
    async with open_tiered(models, tools=ToolRegistry.of([refund])) as agent:
        paused = await agent.arun(HARD)
        assert paused.status == "interrupted"
        assert (await agent.astate(paused.thread_id))["tier"] == "complex"
        done = await agent.aapprove(paused.thread_id)
    assert done.success and done.output == "Refunded A7 after comparing the orders."
    assert log == ["complex", "complex"]
    assert routes(done) == [("start", "complex")]


async def test_a_failed_summary_falls_back_to_the_digest(
    open_tiered: Any, looping_tools: ToolRegistry
) -> None:
    seen: list[list[BaseMessage]] = []

    def worker(messages: list[BaseMessage], info: CallInfo) -> Reply:
        seen.append(messages)
        if info.index < 8:
            key = f"k{info.index}" + "!" * 300
            return AIMessage(
                content="",
                tool_calls=[{"name": "lookup", "args": {"key": key}, "id": f"c{info.index}"}],
            )
        return "done"

    summarizer = FunctionModel(fn=lambda m, i: ConnectionError("summarizer down"))
    async with open_tiered(
        {"simple": summarizer, "standard": FunctionModel(fn=worker)},
        tools=looping_tools,
        model_tiers={"simple": "scripted:cheap"},
        cost={"routing": False},
        compaction={"max_prompt_tokens": 900, "keep_last": 2},
        limits={"max_iterations": 20},
    ) as agent:
        result = await agent.arun("Look up k0 to k7 and report")
    assert result.success and result.output == "done"
    assert summarizer.calls > 0
    assert not [s for s in result.metadata.trace if s["signal"] == "compact"]
    digest = str(seen[-1][2].content)
    assert digest.startswith("Summary of the earlier steps") and "called lookup" in digest

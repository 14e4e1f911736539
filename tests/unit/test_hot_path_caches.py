"""Work done once instead of before every model call (issue 19): tool schemas and the
registry's version per tool set, the model with its tools bound per model, each message's
size per message; and a compaction summary that stays bounded."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.config import ModelPrice, load_settings
from keel.cost.accounting import estimate_tokens as reference_estimate
from keel.nodes import (
    SUMMARY_MAX_CHARS,
    bound_model,
    estimate_request,
    estimate_tokens,
    reason_estimate,
    reason_request,
    summarize_middle,
)
from keel.testing.scripted import FunctionModel
from keel.tools import ToolRegistry, calculator, sql_query, tool


def _messages() -> list[BaseMessage]:
    call = AIMessage(
        "", tool_calls=[{"name": "sql_query", "args": {"query": "SELECT 1"}, "id": "c1"}]
    )
    return [
        SystemMessage("system " * 30),
        HumanMessage("Which products sold best?"),
        call,
        ToolMessage('{"rows": [[1]]}', tool_call_id="c1", name="sql_query"),
        AIMessage([{"type": "text", "text": "a list content"}]),
        AIMessage("done"),
    ]


def test_estimate_matches_accounting_and_remeasures_a_changed_message() -> None:
    messages = _messages()
    schemas = [t.openai_schema() for t in (sql_query, calculator)]
    chars = sum(len(json.dumps(s, default=str)) for s in schemas)
    assert estimate_tokens(messages, chars) == reference_estimate(messages, schemas)
    assert estimate_tokens(messages) == reference_estimate(messages)  # remembered: same
    call = messages[2]
    assert isinstance(call, AIMessage)
    call.tool_calls = [*call.tool_calls, {"name": "calculator", "args": {"e": "1"}, "id": "c2"}]
    messages[4].content = [{"type": "text", "text": "a much longer list content " * 20}]
    assert estimate_tokens(messages) == reference_estimate(messages)


def test_registry_builds_schemas_and_version_once_per_tool_set() -> None:
    registry = ToolRegistry.of([sql_query, calculator])
    first = registry.openai_schemas()
    assert registry.openai_schemas() is first  # shared, not rebuilt
    blob = json.dumps([t.openai_schema() for t in registry], sort_keys=True)
    assert registry.version == hashlib.sha256(blob.encode()).hexdigest()[:12]  # as before
    copied = sql_query.openai_schema()
    copied["function"]["name"] = "changed"  # a copy callers may change...
    assert registry.openai_schemas()[0]["function"]["name"] == "sql_query"  # ...shares nothing
    before = registry.version

    @tool
    def echo(text: str) -> str:
        """Say it back."""
        return text

    registry.register(echo)
    assert registry.version != before
    assert [s["function"]["name"] for s in registry.openai_schemas()] == [
        "sql_query",
        "calculator",
        "echo",
    ]


class CountingModel(FunctionModel):
    binds: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        self.binds += 1
        return super().bind_tools(tools, **kwargs)


def _context(model: FunctionModel, registry: ToolRegistry) -> Any:
    class Ctx:
        """The parts of `keel.nodes.context.AgentContext` a prompt reads."""

        def __init__(self) -> None:
            self.model = model
            self.mode = "native"
            self.tools = registry
            self.settings = load_settings(model="scripted:sales")
            self.system_prompt = "You answer questions."
            self.clock = lambda: 1_700_000_000.0
            self.price = ModelPrice(input=1.0, output=2.0)
            self.prompt_memo: list[Any] = []

    return Ctx()


def test_the_model_is_bound_once_per_model_and_tool_set() -> None:
    registry = ToolRegistry.of([sql_query, calculator])
    model = CountingModel(fn=lambda messages, info: "ok")
    ctx = _context(model, registry)
    state: Any = {"messages": [HumanMessage("hi")], "deadline": 0.0}
    first = reason_request(state, ctx, 0.0)
    second = reason_request(state, ctx, 0.0)
    assert model.binds == 1 and first.model is second.model is bound_model(ctx)
    assert second.tools is registry.openai_schemas()
    bound_schemas = cast(Any, first.model).kwargs["tools"]
    assert bound_schemas == list(registry.openai_schemas())
    assert bound_schemas[0] is not registry.openai_schemas()[0]  # the model got its own copy
    other = CountingModel(fn=lambda messages, info: "ok")
    reason_request(state, _context(other, registry), 0.0)
    assert other.binds == 1 and model.binds == 1
    schemas = [copy.deepcopy(s) for s in registry.openai_schemas()]
    expected = reference_estimate(first.prompt, schemas) + ctx.settings.max_tokens
    assert reason_estimate(state, ctx).tokens == expected


def test_the_estimate_and_the_call_share_one_prompt_until_the_state_changes() -> None:
    """The cost gate's estimate and `reason`'s call build the prompt once; a longer history,
    a repair pass or a new day builds it again, so a reused prompt is never stale."""
    registry = ToolRegistry.of([sql_query, calculator])
    ctx = _context(CountingModel(fn=lambda messages, info: "ok"), registry)
    messages: list[BaseMessage] = [HumanMessage("hi")]
    state: Any = {"messages": messages}
    estimate = reason_estimate(state, ctx)
    request = reason_request({**state, "tier": "default"}, ctx, 0.0)
    assert ctx.prompt_memo[0][2] == request.prompt
    assert reason_request(state, ctx, 0.0).prompt[0] is request.prompt[0]  # reused, not rebuilt
    messages.append(HumanMessage("appended in place"))
    assert reason_request(state, ctx, 0.0).prompt[-1].content == "appended in place"
    assert (
        estimate.tokens
        == reference_estimate(request.prompt, [copy.deepcopy(s) for s in registry.openai_schemas()])
        + ctx.settings.max_tokens
    )
    # the model gate checks the estimate the cost gate made, not a new one of the same prompt
    schemas = [copy.deepcopy(s) for s in registry.openai_schemas()]
    assert request.prompt_tokens == reference_estimate(request.prompt, schemas)
    assert estimate_request(request).tokens == estimate.tokens
    longer = reason_request(state, ctx, 0.0)  # the history grew in place: estimated again
    assert longer.prompt_tokens == reference_estimate(longer.prompt, schemas)
    assert longer.prompt_tokens != request.prompt_tokens
    grown = [*messages, AIMessage("hello"), HumanMessage("and now?")]
    assert [m.content for m in reason_request({"messages": grown}, ctx, 0.0).prompt[1:]] == [
        "hi",
        "appended in place",
        "hello",
        "and now?",
    ]
    repair = {**state, "signal": "repair", "repair_hint": "say it as JSON", "rejected_output": "x"}
    assert "say it as JSON" in str(reason_request(repair, ctx, 0.0).prompt[-1].content)
    system = reason_request(state, ctx, 0.0).prompt[0].content
    ctx.clock = lambda: 1_700_000_000.0 + 86_400 * 40
    assert reason_request(state, ctx, 0.0).prompt[0].content != system  # today's dates


async def test_a_summary_the_model_leaves_empty_stays_bounded() -> None:
    """Each turn, the model returns nothing: the earlier summary plus the new steps stand in,
    but no longer grow with the history (before: ~300 more characters a turn, unbounded)."""

    async def silent(prompt: list[BaseMessage]) -> BaseMessage:
        return AIMessage("")

    history: list[BaseMessage] = [HumanMessage("Which products sold best?")]
    summary: str | None = None
    upto = 0
    sizes = []
    for turn in range(60):
        history += [
            AIMessage(
                "",
                tool_calls=[
                    {"name": "sql_query", "args": {"query": f"SELECT {turn}"}, "id": f"c{turn}"}
                ],
            ),
            ToolMessage(f"row {turn} " + "x" * 150, tool_call_id=f"c{turn}", name="sql_query"),
        ]
        span = (1, len(history) - 2)
        summary = await summarize_middle(silent, history, span, summary, upto)
        upto = span[1]
        sizes.append(len(summary))
    assert max(sizes) <= SUMMARY_MAX_CHARS + 80  # the cut marker
    assert summary is not None and f"SELECT {58}" in summary  # the latest summarized step
    assert "characters dropped" in summary


async def test_a_long_model_summary_is_cut() -> None:
    async def verbose(prompt: list[BaseMessage]) -> BaseMessage:
        return AIMessage("word " * 2000)

    history: list[BaseMessage] = [HumanMessage("q"), AIMessage("a"), AIMessage("b")]
    text = await summarize_middle(verbose, history, (1, 2))
    assert len(text) <= SUMMARY_MAX_CHARS + 80 and "characters dropped" in text

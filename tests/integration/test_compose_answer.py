"""The two-step answer: a tool-free call writes the final answer from the question and results."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.nodes import (
    COMPOSE_SYSTEM,
    column_sums,
    compose_prompt,
    should_compose,
    text_of,
)
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool

QUESTION = "Which 2 products sold most, and how many in all?"
ROWS = '{"columns": ["name", "units"], "rows": [["Laptop", 120], ["Tablet", 80]]}'


def call(name: str, args: dict[str, Any], cid: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": cid}])


@pytest.mark.parametrize(
    ("mode", "spec", "expected"),
    [
        ("auto", "local:qwen2.5-coder-0.5b", True),
        ("auto", "openai:gpt-4o-mini", False),
        ("always", "scripted:x", True),
        ("never", "local:qwen2.5-coder-0.5b", False),
    ],
)
def test_compose_mode(mode: Any, spec: str, expected: bool) -> None:
    assert should_compose(mode, spec) is expected


def test_prompt_holds_the_question_and_this_turns_good_results_only() -> None:
    messages: list[BaseMessage] = [
        HumanMessage("an earlier question"),
        call("sql_query", {"query": "SELECT 1"}, "old"),
        ToolMessage("999", tool_call_id="old"),
        AIMessage("earlier answer"),
        HumanMessage(QUESTION),
        call("calculator", {"expression": "SELECT x"}, "bad"),
        ToolMessage("Error: this is SQL", tool_call_id="bad", status="error"),
        call("sql_query", {"query": "SELECT name, n FROM t"}, "c1"),
        ToolMessage(ROWS, tool_call_id="c1"),
        call("calculator", {"expression": "120 + 80"}, "c2"),
        ToolMessage("200", tool_call_id="c2"),
    ]
    prompt = compose_prompt(messages, QUESTION)
    assert prompt is not None
    assert isinstance(prompt[0], SystemMessage) and text_of(prompt[0].content) == COMPOSE_SYSTEM
    body = text_of(prompt[1].content)
    assert body.startswith(f"Question: {QUESTION}")
    assert "1. sql_query: SELECT name, n FROM t\n   result: " + ROWS in body
    assert "2. calculator: 120 + 80\n   result: 200" in body
    assert "999" not in body and "Error" not in body  # other turns and failed calls left out


@pytest.mark.parametrize(
    ("result", "sums"),
    [
        (
            '{"columns": ["name", "revenue", "n"], "rows": [["A", 0.1, 2], ["B", 0.2, 3]],'
            ' "row_count": 2, "truncated": false}',
            ["sum of revenue over these 2 rows: 0.3", "sum of n over these 2 rows: 5"],
        ),
        ('{"columns": ["n"], "rows": [[7]], "row_count": 1, "truncated": false}', []),
        ('{"columns": ["n"], "rows": [[1], [2]], "truncated": true}', []),  # partial: no sum
        ('{"columns": ["n"], "rows": [[1], [null]]}', []),
        ('{"columns": ["ok"], "rows": [[true], [false]]}', []),
        ("137246.28", []),
        ("not json", []),
    ],
)
def test_column_sums(result: str, sums: list[str]) -> None:
    assert column_sums(result) == sums


def test_sums_are_shown_only_when_the_question_asks_for_a_total() -> None:
    rows = '{"columns": ["name", "n"], "rows": [["Laptop", 120], ["Tablet", 80]]}'
    history: list[BaseMessage] = [call("sql_query", {"query": "SELECT"}, "c1")]
    history.append(ToolMessage(rows, tool_call_id="c1"))
    for question, shown in [("Which sold most?", False), ("What is their total?", True)]:
        prompt = compose_prompt([HumanMessage(question), *history], question)
        assert prompt is not None
        assert ("sum of n over these 2 rows: 200" in text_of(prompt[1].content)) is shown


def test_no_prompt_without_tool_results() -> None:
    assert compose_prompt([HumanMessage(QUESTION), AIMessage("hi")], QUESTION) is None


@pytest.fixture
def registry() -> ToolRegistry:
    @tool(idempotent=True)
    def sales() -> str:
        """Units sold per product."""
        return ROWS

    return ToolRegistry.of([sales])


def scripted(draft: str, composed: str | Exception) -> FunctionModel:
    """Calls the tool, drafts `draft`; a call with no tools bound gets `composed`."""

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        if not info.tools:
            assert text_of(messages[0].content) == COMPOSE_SYSTEM
            if isinstance(composed, Exception):
                raise composed
            return AIMessage(composed)
        if not any(isinstance(m, ToolMessage) for m in messages):
            return call("sales", {}, "c1")
        return AIMessage(draft)

    return FunctionModel(fn=reply)


@pytest.mark.asyncio
async def test_composed_answer_replaces_the_draft(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    model = scripted("Laptop sold most.", "Laptop (120) and Tablet (80) sold most.")
    async with agent_factory(model, tools=registry, compose_answers="always") as agent:
        result = await agent.arun(QUESTION)
    assert result.success
    assert result.output == "Laptop (120) and Tablet (80) sold most."
    rows = [s for s in result.metadata.trace if s["node"] == "reason"]
    assert [s["signal"] for s in rows] == ["tools", "compose", "answer"]
    assert rows[1]["thought"] == "Laptop sold most."
    assert result.metadata.model_calls == 3


@pytest.mark.asyncio
async def test_compose_off_keeps_the_models_answer(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    model = scripted("Laptop sold most.", "unused")
    async with agent_factory(model, tools=registry, compose_answers="never") as agent:
        result = await agent.arun(QUESTION)
    assert result.output == "Laptop sold most."
    assert result.metadata.model_calls == 2


@pytest.mark.asyncio
async def test_failed_compose_call_keeps_the_draft(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    model = scripted("Laptop sold most.", RuntimeError("server went away"))
    async with agent_factory(model, tools=registry, compose_answers="always") as agent:
        result = await agent.arun(QUESTION)
    assert result.success and result.output == "Laptop sold most."


@pytest.mark.asyncio
async def test_a_shown_column_sum_grounds_the_composed_answer(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    question = "Which products sold, and how many units in total?"
    model = scripted("Laptop and Tablet.", "Laptop and Tablet: 200 units in total.")
    async with agent_factory(model, tools=registry, compose_answers="always") as agent:
        result = await agent.arun(question)
    assert result.success and result.output == "Laptop and Tablet: 200 units in total."
    signals = [s["signal"] for s in result.metadata.trace if s["node"] == "reason"]
    assert signals == ["tools", "compose", "answer"]  # 200 is in no tool result, but was shown


@pytest.mark.asyncio
async def test_ungrounded_composed_answer_is_repaired(
    agent_factory: Any, registry: ToolRegistry
) -> None:
    composed = iter(["In all 250 units.", "Laptop and Tablet: 200 units in all."])

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        if not info.tools:
            return AIMessage(next(composed))
        if not any(isinstance(m, ToolMessage) for m in messages):
            return call("sales", {}, "c1")
        said_250 = any("250" in text_of(m.content) for m in messages)  # not ids: uuids vary
        if sum(isinstance(m, ToolMessage) for m in messages) == 1 and said_250:
            return call("sales", {}, "c2")  # the repair pass: look again
        return AIMessage("Laptop and Tablet.")

    model = FunctionModel(fn=reply)
    async with agent_factory(model, tools=registry, compose_answers="always") as agent:
        result = await agent.arun(QUESTION.replace("how many", "how many (120 + 80 = 200)"))
    assert result.success
    assert result.output == "Laptop and Tablet: 200 units in all."
    signals = [s["signal"] for s in result.metadata.trace if s["node"] == "reason"]
    assert signals == ["tools", "compose", "repair", "tools", "compose", "answer"]

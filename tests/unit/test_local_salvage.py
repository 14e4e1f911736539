"""Bare `{"name", "arguments"}` replies of small local models become tool calls; nothing else."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from keel.models.local import salvage_tool_call

TOOLS = {"sql_query", "calculator"}


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "calculator", "arguments": {"expression": "1+2"}}',
        '```json\n{"name": "calculator", "arguments": {"expression": "1+2"}}\n```',
        '{"name": "calculator", "arguments": "{\\"expression\\": \\"1+2\\"}"}',
    ],
)
def test_bare_calls_to_bound_tools_are_salvaged(content: str) -> None:
    fixed = salvage_tool_call(AIMessage(content), TOOLS)
    assert fixed.content == ""
    assert [(c["name"], c["args"]) for c in fixed.tool_calls] == [
        ("calculator", {"expression": "1+2"})
    ]
    assert fixed.tool_calls[0]["id"]


@pytest.mark.parametrize(
    "content",
    [
        "The answer is 3.",
        '{"name": "rm_rf", "arguments": {}}',  # not a bound tool
        '{"name": "calculator", "arguments": {"expression": "1"}, "extra": 1}',
        '{"name": "calculator", "arguments": "not json"}',
        '{"name": "calculator", "arguments": [1, 2]}',
        'Sure: {"name": "calculator", "arguments": {}}',  # prose around it: left for repair
    ],
)
def test_anything_else_is_left_alone(content: str) -> None:
    message = AIMessage(content)
    assert salvage_tool_call(message, TOOLS) is message


def test_no_tools_bound_means_no_salvage() -> None:
    message = AIMessage('{"name": "calculator", "arguments": {}}')
    assert salvage_tool_call(message, set()) is message

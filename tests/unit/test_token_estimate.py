"""The prompt estimate reads a message's tool calls without pydantic's slow path (issue 19).

`getattr(message, "tool_calls", None)` on a message without the field goes through
`BaseModel.__getattr__`, which builds and raises an `AttributeError`: about 1 % of a run's
CPU, since the estimate looks at every message of the prompt before each model call.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from keel.cost.accounting import estimate_tokens as reference_estimate
from keel.nodes import estimate_tokens


def test_the_estimate_never_asks_pydantic_for_a_missing_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = {"name": "calculator", "args": {"expression": "1 + 2"}, "id": "c1"}
    messages = [
        SystemMessage("be brief"),
        HumanMessage("what is 1 + 2?"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("3", tool_call_id="c1"),
        HumanMessage([{"type": "text", "text": "and 2 + 2?"}]),
    ]
    expected = reference_estimate(messages)
    missed: list[str] = []

    def spy(self: Any, name: str) -> Any:
        missed.append(name)
        raise AttributeError(name)

    for cls in (HumanMessage, SystemMessage, ToolMessage):
        monkeypatch.setattr(cls, "__getattr__", spy, raising=False)
    assert estimate_tokens(messages) == expected
    assert missed == []

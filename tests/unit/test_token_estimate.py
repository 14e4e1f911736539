"""The prompt estimate reads a message's tool calls without pydantic's slow path (issue 19).

`getattr(message, "tool_calls", None)` on a message without the field goes through
`BaseModel.__getattr__`, which builds and raises an `AttributeError`: about 1 % of a run's
CPU, since the estimate looks at every message of the prompt before each model call.
"""

from __future__ import annotations

import gc
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


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_remembered_size_is_one_object_per_message_and_goes_with_it() -> None:
    """With a thousand runs alive the memo's entries are part of every full collection:
    each remembered message costs the collector one object, not a reference, a closure
    and tuples (issue 19). The entry still goes when its message does."""
    calls = [
        AIMessage(
            "",
            tool_calls=[{"name": "calculator", "args": {"expression": f"{i} + 1"}, "id": f"c{i}"}],
        )
        for i in range(200)
    ]
    expected = reference_estimate(calls)
    before = _tracked()
    assert estimate_tokens(calls) == expected
    kept = _tracked() - before
    assert kept <= len(calls) + 5
    assert estimate_tokens(calls) == expected  # remembered: the same answer
    del calls
    assert _tracked() <= before - 200 * 3  # the messages, and their entries with them


def test_a_remembered_size_is_measured_again_when_the_message_changes() -> None:
    """The size remembered for a message with tool calls is used only while its content
    and tool calls are the ones it was measured with."""
    call = {"name": "calculator", "args": {"expression": "1 + 2"}, "id": "c1"}
    message = AIMessage("", tool_calls=[call])
    history = [HumanMessage("what is 1 + 2?"), message]
    assert estimate_tokens(history) == reference_estimate(history)  # measured, remembered
    assert estimate_tokens(history) == reference_estimate(history)  # remembered
    longer = {**call, "args": {"expression": "1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9"}}
    message.tool_calls = [longer, {**longer, "id": "c2"}]
    assert estimate_tokens(history) == reference_estimate(history)
    message.content = "now with a thought " * 20
    assert estimate_tokens(history) == reference_estimate(history)

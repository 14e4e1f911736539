"""A node step writes only what it changes: every write costs LangGraph a channel update, a
saved write and a stored value, and readers see the same state without the no-op ones."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from keel.config import load_settings
from keel.nodes import changes
from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import ToolRegistry, tool


def test_unchanged_values_and_empty_appends_are_dropped() -> None:
    state: dict[str, Any] = {"model_attempt": 0, "answer": None, "signal": "tools", "tier": "s"}
    update = {
        "model_attempt": 0,  # unchanged
        "answer": None,  # unchanged
        "signal": "continue",  # changed
        "repair_attempt": 0,  # not in the state yet: written
        "errors": [],  # appends nothing
        "trace": [{"node": "act"}],
        "usage": {"model_calls": 0},  # a reducer's value: always written
        "question": "q",  # not a step key: always written
    }
    assert changes(state, update) == {
        "signal": "continue",
        "repair_attempt": 0,
        "trace": [{"node": "act"}],
        "usage": {"model_calls": 0},
        "question": "q",
    }


async def test_a_run_on_the_usual_path_writes_no_unchanged_key(tmp_path: Any) -> None:
    @tool(idempotent=True)
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    call = AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c"}])
    settings = load_settings(model="scripted:echo", home=tmp_path, checkpoint_url="memory://")
    model = ScriptedModel([call, "2 + 3 = 5"])
    async with open_agent(settings, model=model, tools=ToolRegistry.of([add])) as agent:
        state = agent.start_state("What is 2 + 3?")
        state["messages"] = [HumanMessage("What is 2 + 3?")]
        before: dict[str, Any] = dict(state)
        steps = []
        async for chunk in agent.graph.astream(
            state, agent.config("t"), context=agent.context, stream_mode="updates"
        ):
            for node, update in chunk.items():
                steps.append(node)
                for key, value in update.items():
                    if key in ("model_attempt", "repair_attempt", "repair_hint", "answer"):
                        assert before.get(key, object()) != value, (node, key, value)
                before.update({k: v for k, v in update.items() if k not in ("messages", "trace")})
    assert steps == ["reason", "act", "reason", "finish"]

"""`copy_thread` copies a thread's whole history and its interrupted step, on every saver."""

from __future__ import annotations

from typing import Any

from keel.checkpoints.thread_copy import copy_thread
from keel.tools import default_tools
from keel.tools.registry import ToolRegistry
from tests.conftest import AgentFactory
from tests.integration.service_server import ask_human, tool_once_model


def _ids(history: list[Any]) -> list[str]:
    return [s.config["configurable"]["checkpoint_id"] for s in history]


async def test_copy_thread_carries_history_and_the_pending_interrupt(
    agent_factory: AgentFactory,
) -> None:
    tools = ToolRegistry.of([*default_tools(), ask_human])
    model = tool_once_model("ask_human", {"question": "May I?"})
    async with agent_factory(model, tools=tools) as agent:
        await agent.arun("Shall we?", thread_id="src")
        saver = agent.graph.checkpointer
        copied = await copy_thread(saver, "src", "dst")
        source = await agent.graph.aget_state(agent.config("src"))
        copy = await agent.graph.aget_state(agent.config("dst"))
        assert source.next == ("act",) and source.tasks[0].interrupts
        assert copy.values == source.values and copy.next == source.next
        assert [t.interrupts for t in copy.tasks] == [t.interrupts for t in source.tasks]
        src_history = [s async for s in agent.graph.aget_state_history(agent.config("src"))]
        dst_history = [s async for s in agent.graph.aget_state_history(agent.config("dst"))]
        assert copied == len(src_history) and _ids(dst_history) == _ids(src_history)
        assert [s.values for s in dst_history] == [s.values for s in src_history]
        src_tuple = await saver.aget_tuple(agent.config("src"))
        dst_tuple = await saver.aget_tuple(agent.config("dst"))
        assert src_tuple is not None and dst_tuple is not None
        assert dst_tuple.pending_writes == src_tuple.pending_writes
        assert await copy_thread(saver, "nothing-here", "dst2") == 0

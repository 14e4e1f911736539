"""bench/workload.py: the settings both sides share, and the textbook loop's wider states."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.concurrency import LIMITS
from bench.workload import keel_settings, runner, widened_state


def test_the_many_runs_limits_reach_the_sql_tool_on_both_sides(tmp_path: Path) -> None:
    """With the benches' hour-long timeouts the SQL tool's statement timeout is as long (a
    query waiting its turn is not cancelled); other limits, or none, leave its default."""
    many = keel_settings("memory://", tmp_path, LIMITS)
    assert many.sql.statement_timeout_s == max(LIMITS.values())
    assert many.limits.tool_timeout_s == LIMITS["tool_timeout_s"]
    default = keel_settings("memory://", tmp_path).sql.statement_timeout_s
    assert keel_settings("memory://", tmp_path, {"max_iterations": 50}).sql.statement_timeout_s == (
        default
    )


def test_a_widened_state_has_one_channel_more_per_key() -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    def channels(state: object) -> set[str]:
        graph = StateGraph(state)  # type: ignore[call-overload]
        graph.add_node("node", lambda s: {})
        graph.add_edge(START, "node")
        return set(graph.compile().channels)

    wide = channels(widened_state(3))
    assert wide - channels(MessagesState) == {"k0", "k1", "k2"}


async def test_the_textbook_loop_with_extra_keys_does_the_same_work(tmp_path: Path) -> None:
    """The same six model calls and scripted answer (the runner checks both)."""
    async with runner("textbook", "memory://", tmp_path, extra_keys=4) as run:
        await run("t1")
    with pytest.raises(ValueError, match="textbook"):
        async with runner("keel", "memory://", tmp_path, extra_keys=4):
            pass

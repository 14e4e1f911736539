"""The agent graph keeps 16 state keys in two channels (`run`, `control`) and is read and
written flat all the same (`keel.graphs.flat_state.FlatStateGraph`): snapshots, history,
`update_state`, streams and `ainvoke`, on every saver; a checkpoint written before the fold
(`tests/fixtures/checkpoints_main_df80c4d.sqlite`) is folded as it loads and goes on."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from keel.checkpoints import open_saver
from keel.config import Settings
from keel.runtime import Agent, open_agent
from keel.types import CONTROL_KEYS, RUN_KEYS

FOLDED = RUN_KEYS | CONTROL_KEYS
QUESTION = "Which 3 products had the highest revenue last month, and what was their total revenue?"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoints_main_df80c4d.sqlite"


def _is_flat(values: Any) -> bool:
    return isinstance(values, dict) and "run" not in values and "control" not in values


async def _raw_channels(saver: BaseCheckpointSaver[Any], thread_id: str) -> set[str]:
    """The channels the thread's latest stored checkpoint has versions for."""
    found = await saver.aget_tuple(RunnableConfig(configurable={"thread_id": thread_id}))
    assert found is not None
    return set(found.checkpoint["channel_versions"])


async def _stored_channels(settings: Settings, thread_id: str) -> set[str]:
    async with open_saver(settings.checkpoint_url, settings.checkpoint_pool) as saver:
        return await _raw_channels(saver, thread_id)


async def test_the_keys_are_stored_in_two_channels_and_read_flat(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    settings = settings_factory(model="scripted:sales", checkpoint_url=checkpoint_url)
    async with open_agent(settings) as agent:
        assert {"run", "control"} <= set(agent.graph.channels)
        assert not FOLDED & set(agent.graph.channels) and len(agent.graph.channels) <= 22
        result = await agent.arun(QUESTION, thread_id="t")
        assert result.success
        assert agent.graph.checkpointer is not None
        stored = await _raw_channels(agent.graph.checkpointer, "t")
        assert {"run", "control"} <= stored and not FOLDED & stored

        state = (await agent.graph.aget_state(agent.config("t"))).values
        started = {"model_spec", "limits", "policy", "budget", "deadline", "iteration"}
        assert _is_flat(state) and started | {"model_attempt", "repair_attempt"} <= set(state)
        assert state["limits"]["max_iterations"] == agent.settings.limits.max_iterations
        assert state["iteration"] >= 1 and state["model_spec"] == "scripted:sales"
        history = [s async for s in agent.graph.aget_state_history(agent.config("t"))]
        assert len(history) > 5 and all(_is_flat(s.values) for s in history)

        await agent.graph.aupdate_state(agent.config("t"), {"iteration": 7, "repair_hint": "x"})
        after = (await agent.graph.aget_state(agent.config("t"))).values
        assert after["iteration"] == 7 and after["repair_hint"] == "x"
        unchanged = {k: v for k, v in after.items() if k not in ("iteration", "repair_hint")}
        assert unchanged == {
            k: v for k, v in state.items() if k not in ("iteration", "repair_hint")
        }


async def _streamed(agent: Agent, thread_id: str, **kwargs: Any) -> list[Any]:
    """Every chunk of a run of the sales question on `thread_id`, streamed with `kwargs`."""
    return [
        chunk
        async for chunk in agent.graph.astream(
            agent.start_state(QUESTION), agent.config(thread_id), context=agent.context, **kwargs
        )
    ]


async def test_streams_and_invoke_give_flat_values_and_updates(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    settings = settings_factory(model="scripted:sales", checkpoint_url=checkpoint_url)
    async with open_agent(settings) as agent:
        chunks = await _streamed(agent, "s", stream_mode=["values", "updates"])
        values = [c for mode, c in chunks if mode == "values"]
        updates = [c for mode, c in chunks if mode == "updates"]
        assert values and all(_is_flat(v) for v in values)
        assert values[-1]["outcome"]["success"] and values[-1]["iteration"] >= 1
        reasons = [u["reason"] for u in updates if "reason" in u]
        assert reasons and all(_is_flat(u) and "iteration_deadline" in u for u in reasons)

        parts = await _streamed(agent, "v2", stream_mode="values", version="v2")
        assert parts and all(_is_flat(p["data"]) for p in parts)

        out = await agent.graph.ainvoke(
            agent.start_state(QUESTION), agent.config("i"), context=agent.context
        )
        assert _is_flat(out) and out["outcome"]["success"] and out["deadline"] > 0


def _no_channels(value: Any) -> bool:
    """Nowhere inside `value` a `run` or `control` key (the user's `custom` chunks aside)."""
    if isinstance(value, dict):
        return (
            "run" not in value and "control" not in value and all(map(_no_channels, value.values()))
        )
    if isinstance(value, list | tuple):
        return all(map(_no_channels, value))
    return True


async def test_checkpoints_tasks_and_debug_chunks_show_the_state_flat(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    """What the Agent Server's `checkpoints`, `tasks` and `debug` stream modes carry: a
    checkpoint's values, a node's input and its writes, with the folded keys in them."""
    settings = settings_factory(model="scripted:sales", checkpoint_url=checkpoint_url)
    async with open_agent(settings) as agent:
        chunks = await _streamed(agent, "c", stream_mode=["checkpoints", "tasks", "debug"])
        by_mode = {
            m: [c for mode, c in chunks if mode == m] for m in ("checkpoints", "tasks", "debug")
        }
        assert all(by_mode.values()) and all(_no_channels(c) for c in chunks)
        last = by_mode["checkpoints"][-1]["values"]
        assert last["outcome"]["success"] and last["iteration"] >= 1
        inputs = [
            t["input"] for t in by_mode["tasks"] if t.get("name") == "reason" and "input" in t
        ]
        assert inputs and all("limits" in i and "deadline" in i for i in inputs)
        results = [
            t["result"] for t in by_mode["tasks"] if t.get("name") == "reason" and "result" in t
        ]
        assert results and all("iteration_deadline" in r for r in results)
        kinds = {c["type"] for c in by_mode["debug"]}
        assert kinds == {"checkpoint", "task", "task_result"}

        history = [s async for s in agent.graph.aget_state_history(agent.config("c"))]
        done = [t.result for s in history for t in s.tasks if t.name == "reason" and t.result]
        assert done and _no_channels(done) and all("iteration_deadline" in r for r in done)


async def test_a_checkpoint_written_before_the_fold_resumes_and_is_stored_folded(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """df80c4d's `approval-pending` thread waits for approval of `sql_query`, its keys one
    channel each: it reads flat, and once approved its run finishes, written folded."""
    copy = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, copy)
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=f"sqlite:///{copy}", approval_tools=["sql_query"]
    )
    assert {"iteration", "limits"} <= await _stored_channels(settings, "approval-pending")
    async with open_agent(settings) as agent:
        waiting = await agent.astate("approval-pending")
        assert _is_flat(waiting) and waiting["iteration"] == 0
        assert waiting["limits"]["max_iterations"] > 0 and waiting["deadline"] > 0
        result = await agent.aapprove("approval-pending")
        assert result.success and "Their total revenue was" in result.output
        done = await agent.astate("approval-pending")
        assert _is_flat(done) and done["iteration"] >= 1
    stored = await _stored_channels(settings, "approval-pending")
    assert {"run", "control"} <= stored and not FOLDED & stored


async def test_the_drivers_own_stream_reads_the_channels_as_stored(
    settings_factory: Callable[..., Settings],
) -> None:
    """`stream_graph(..., channels=True)` (a run driven for its result alone: the observer
    reads `trace`, `usage` and `fatal_error`) skips the flattening; without it, flat."""
    from keel.runtime.driver import stream_graph

    async with open_agent(settings_factory(model="scripted:sales")) as agent:
        seen: dict[bool, list[Any]] = {}
        for channels in (True, False):
            seen[channels] = [
                chunk
                async for mode, chunk in stream_graph(
                    agent.graph,
                    agent.start_state(QUESTION),
                    agent.config(f"d{channels}"),
                    stream_mode=["updates"],
                    channels=channels,
                    context=agent.context,
                )
                if "reason" in chunk
            ]
        assert seen[True] and all("control" in c["reason"] for c in seen[True])
        assert seen[False] and all(_is_flat(c["reason"]) for c in seen[False])

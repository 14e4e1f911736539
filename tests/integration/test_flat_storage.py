"""Checkpoint storage per turn is flat (`messages` and `trace` are `DeltaChannel`s), and
what that changes keeps working: pruning, time travel, `keel trace`, and checkpoints written
before the change (`tests/fixtures/checkpoints_main_08eff99.sqlite`)."""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from bench.storage import added, measure
from keel.checkpoints.retention import RetentionPolicy
from keel.checkpoints.thread_copy import copy_thread
from keel.config import Settings
from keel.observability.run_trace import load_trace
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool
from tests.conftest import fresh_database

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_main_08eff99.sqlite"
SALES = "Which 3 products had the highest revenue last month, and what was their total revenue?"


@pytest.mark.parametrize("saver", ["sqlite", "postgres"])
async def test_bytes_per_turn_stay_flat_for_fifty_turns(
    saver: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The sales question 50 times on one thread. A turn adds what its steps wrote, the same
    at turn 50 as at turn 20 (when the lists were stored whole at every checkpoint, turn 50
    added 15× what turn 2 did). Two steps are allowed: from about turn 19 the history is
    long enough for compaction, and every turn makes one more model call (the summary),
    ~0.5–0.9 KB more than the first turns; and a turn in which a list reaches its snapshot
    cadence stores it whole once (rare: they raise the mean by less than half). Turns vary
    by a few hundred bytes with where a compression base is written, so medians of ten
    turns are compared, not single turns."""
    if saver == "postgres":
        request.getfixturevalue("postgres_url")  # fails under CI, skips elsewhere, when down
    sizes, _ = await measure(saver, "keel", 50, tmp_path)
    per_turn = added(sizes)[2:]  # turns 2..50
    early = statistics.median(per_turn[:10])  # turns 2..11
    middle = statistics.median(per_turn[20:30])  # turns 22..31, compaction running
    late = statistics.median(per_turn[-10:])  # turns 41..50
    assert late <= 1.05 * middle, per_turn  # no growth
    assert late <= 1.15 * early, per_turn  # the summary call's step, no more
    assert sum(b > 1.15 * early for b in per_turn) <= 8, per_turn
    assert statistics.mean(per_turn) <= 1.5 * early, per_turn


@tool(idempotent=True)
def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"{topic}: 42 rows, total 1234.50"


def one_lookup(messages: list[Any], info: CallInfo) -> AIMessage | str:
    turn = sum(isinstance(m, HumanMessage) for m in messages)
    if isinstance(messages[-1], ToolMessage):
        return f"Turn {turn}: 42 rows with a total of 1234.50."
    call = {"name": "lookup", "args": {"topic": f"topic {turn}"}, "id": f"t{turn}"}
    return AIMessage(content="", tool_calls=[call])


@pytest.fixture
def own_store(checkpoint_url: str, tmp_path: Path) -> Iterator[str]:
    """A store no other test writes to (pruning sees every thread in it)."""
    if not checkpoint_url.startswith("postgresql://"):
        yield checkpoint_url
        return
    with fresh_database("keel_flat") as (url, _):
        yield url


async def test_pruning_rewrites_the_oldest_kept_checkpoint_whole(
    settings_factory: Callable[..., Settings], own_store: str
) -> None:
    """`keep_last=1` deletes every checkpoint but the newest, yet the whole conversation and
    trace are still there (the kept checkpoint now holds them), and the thread runs on;
    pruning again after each turn keeps it whole too."""
    settings = settings_factory(checkpoint_url=own_store)
    model, tools = FunctionModel(fn=one_lookup), ToolRegistry.of([lookup])
    async with open_agent(settings, model=model, tools=tools) as agent:
        for turn in range(6):
            assert (await agent.arun(f"question {turn}", thread_id="long")).success
        before = await agent.astate("long")
        count = len(await agent.ahistory("long"))
        report = await agent.aprune(RetentionPolicy(keep_last=1))
        assert report.checkpoints_deleted == count - 1
        after = await agent.astate("long")
        assert after["messages"] == before["messages"] and len(after["messages"]) == 24
        assert after["trace"] == before["trace"]
        for turn in range(7, 10):
            result = await agent.arun("one more", thread_id="long")
            assert result.success and result.output.startswith(f"Turn {turn}")
            await agent.aprune(RetentionPolicy(keep_last=2))
            assert len(await agent.ahistory("long")) == 2
        final = await agent.astate("long")
        assert final["messages"][:24] == before["messages"] and len(final["messages"]) == 36
        assert len(final["trace"]) == 36  # four rows a turn: reason, act, reason, finish


async def test_time_travel_over_delta_channels(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    """Each checkpoint of the history has the conversation as it was then; a fork from an
    early one starts from that conversation; `keel trace` finds every step with its time."""
    settings = settings_factory(checkpoint_url=checkpoint_url)
    model, tools = FunctionModel(fn=one_lookup), ToolRegistry.of([lookup])
    async with open_agent(settings, model=model, tools=tools) as agent:
        for turn in range(3):
            assert (await agent.arun(f"question {turn}", thread_id="tt")).success
        history = await agent.ahistory("tt")
        counts = [h.messages for h in reversed(history)]
        assert counts == sorted(counts) and counts[-1] == 12
        first_answer = next(h for h in reversed(history) if h.messages == 4)
        assert len((await agent.astate("tt", first_answer.checkpoint_id))["messages"]) == 4
        steps = await load_trace(agent.graph, "tt")
        assert len(steps) == 12 and all(s.at for s in steps)
        assert [s.node for s in steps[:4]] == ["reason", "act", "reason", "finish"]
        forked = await agent.afork("tt", first_answer.checkpoint_id, values={})
        assert forked.success
        assert len((await agent.astate("tt"))["messages"]) == 4
        assert len(await load_trace(agent.graph, "tt")) == 4


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    """A copy of the checkpoint file main wrote at 08eff99 (messages and trace whole)."""
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, path)
    return f"sqlite:///{path}"


async def test_checkpoints_written_before_delta_channels_resume(
    settings_factory: Callable[..., Settings], old_store: str
) -> None:
    """The old file reads back whole; its pending approval, once given, finishes the run;
    and its finished thread takes a new question on top of the old conversation."""
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=old_store, approval_tools=["sql_query"]
    )
    async with open_agent(settings) as agent:
        done = await agent.astate("finished-run")
        assert len(done["messages"]) == 6 and len(done["trace"]) == 8
        assert done["outcome"]["success"]
        waiting = await agent.astate("approval-pending")
        assert len(waiting["messages"]) == 2 and len(waiting["trace"]) == 1
        assert [p["tool"] for p in await agent.apending("approval-pending")] == ["sql_query"]

        # The stored run's deadlines passed long ago: give it new ones (a fork of the old
        # checkpoint), then approve the call it waits for.
        head = (await agent.ahistory("approval-pending"))[0]
        later = time.time() + 600
        forked = await agent.afork(
            "approval-pending",
            head.checkpoint_id,
            values={"deadline": later, "iteration_deadline": later},
        )
        assert forked.status == "interrupted"
        result = await agent.aapprove("approval-pending")
        assert result.success and "Their total revenue was" in result.output
        resumed = await agent.astate("approval-pending")
        assert resumed["messages"][:2] == waiting["messages"]
        # resumed today: act closes the cycles itself (no observe rows)
        assert len(resumed["messages"]) == 6 and len(resumed["trace"]) == 6

        again = await agent.arun(SALES, thread_id="finished-run")
        assert again.success
        grown = await agent.astate("finished-run")
        assert grown["messages"][:6] == done["messages"]
        assert len(grown["messages"]) == 8 and grown["trace"][:8] == done["trace"]
        steps = await load_trace(agent.graph, "finished-run")
        assert len({s.run_id for s in steps}) == 2 and len(steps) == len(grown["trace"])

        await agent.aprune(RetentionPolicy(keep_last=1))
        assert (await agent.astate("finished-run"))["messages"] == grown["messages"]
        assert (await agent.astate("approval-pending"))["trace"] == resumed["trace"]


async def test_a_copied_thread_rebuilds_the_same_delta_values(
    settings_factory: Callable[..., Settings], checkpoint_url: str
) -> None:
    """`copy_thread` of a thread past its first snapshots (20 turns): the copy's state and
    every checkpoint of its history read the same as the source's."""
    settings = settings_factory(checkpoint_url=checkpoint_url)
    model, tools = FunctionModel(fn=one_lookup), ToolRegistry.of([lookup])
    src, dst = f"src-{uuid.uuid4().hex}", f"dst-{uuid.uuid4().hex}"  # the database is shared
    async with open_agent(settings, model=model, tools=tools) as agent:
        for turn in range(20):
            assert (await agent.arun(f"question {turn}", thread_id=src)).success
        saver = agent.graph.checkpointer
        assert isinstance(saver, BaseCheckpointSaver)
        await copy_thread(saver, src, dst)
        source = [s async for s in agent.graph.aget_state_history(agent.config(src))]
        copy = [s async for s in agent.graph.aget_state_history(agent.config(dst))]
        assert [s.values for s in copy] == [s.values for s in source]
        assert len(copy[0].values["messages"]) == 80
        result = await agent.arun("one more", thread_id=dst)
        assert result.success and result.output.startswith("Turn 21")

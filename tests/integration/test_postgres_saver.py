"""`BatchedPostgresSaver` stores what the library's `AsyncPostgresSaver` stores.

One real agent run's checkpoint calls are recorded, then replayed through both savers into
two threads; what LangGraph reads back must be the same. (Keel's saver compresses blobs and
writes, so a row's type and bytes are compared as the value they decode to; it packs a
task's ordinary writes in one row, so writes are compared as the rows they unpack to; and
it stores a checkpoint whole in its own row, compressed, so checkpoints are compared as
read back, and its blobs are the delta snapshots only.)
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from langgraph.checkpoint.base import ERROR, INTERRUPT
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from keel.checkpoints.packed_writes import PACKED_CHANNEL
from keel.checkpoints.postgres_saver import HOLD_S, BatchedPostgresSaver
from keel.checkpoints.savers import make_pool
from keel.config import Settings
from keel.runtime import open_agent
from tests.sales_truth import SALES_QUESTION

Call = tuple[str, tuple[Any, ...]]


async def _recorded_run(settings: Settings) -> list[Call]:
    """The `aput` / `aput_writes` calls of one sales run, as LangGraph made them."""
    calls: list[Call] = []
    async with open_agent(settings) as agent:
        saver = agent.graph.checkpointer
        assert isinstance(saver, BatchedPostgresSaver)
        put, put_writes = saver.aput, saver.aput_writes

        async def recording_put(config: Any, *rest: Any) -> Any:
            calls.append(("put", (_plain(config), *copy.deepcopy(rest))))
            return await put(config, *rest)

        async def recording_writes(config: Any, *rest: Any) -> Any:
            calls.append(("writes", (_plain(config), *copy.deepcopy(rest))))
            return await put_writes(config, *rest)

        saver.aput = recording_put  # type: ignore[method-assign]
        saver.aput_writes = recording_writes  # type: ignore[method-assign]
        result = await agent.arun(SALES_QUESTION)
    assert result.success, result.error
    return calls


def _plain(config: Any) -> dict[str, Any]:
    return {
        "configurable": dict(config["configurable"]),
        "metadata": dict(config.get("metadata", {})),
    }


async def _replay(saver: AsyncPostgresSaver, calls: list[Call], thread_id: str) -> None:
    for kind, (config, *rest) in calls:
        config = {**config, "configurable": {**config["configurable"], "thread_id": thread_id}}
        if kind == "put":
            await saver.aput(config, *rest)
        else:
            await saver.aput_writes(config, *rest)


def _rows(url: str, thread_id: str, serde: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The thread's rows, each trailing (type, blob) pair decoded to its value."""
    queries = {
        "checkpoints": "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint,"
        " metadata FROM checkpoints WHERE thread_id = %s ORDER BY 1, 2",
        "blobs": "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs"
        " WHERE thread_id = %s ORDER BY 1, 2, 3",
        "writes": "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type,"
        " blob FROM checkpoint_writes WHERE thread_id = %s ORDER BY 1, 2, 3, 5",
    }
    with psycopg.connect(url) as conn:
        found = {k: conn.execute(q, (thread_id,)).fetchall() for k, q in queries.items()}
    for table in ("blobs", "writes"):
        found[table] = [
            (*row[:-2], serde.loads_typed((row[-2], row[-1])) if row[-1] is not None else None)
            for row in found[table]
        ]
    return found


def _unpacked(writes: list[tuple[Any, ...]], serde: Any) -> list[tuple[Any, ...]]:
    """Decoded write rows with each packed row replaced by the rows it stands for."""
    rows = []
    for ns, cid, task_id, path, idx, channel, value in writes:
        if channel != PACKED_CHANNEL:
            rows.append((ns, cid, task_id, path, idx, channel, value))
            continue
        for i, ch, t, b in value:
            rows.append((ns, cid, task_id, path, i, ch, serde.loads_typed((t, b))))
    return sorted(rows, key=lambda r: r[:5])


async def test_a_run_is_stored_row_for_row_as_the_library_stores_it(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(model="scripted:sales", checkpoint_url=postgres_url)
    calls = await _recorded_run(settings)
    assert sum(kind == "put" for kind, _ in calls) >= 6
    assert sum(kind == "writes" for kind, _ in calls) >= 6

    pool = make_pool(postgres_url, settings.checkpoint_pool)
    await pool.open()
    try:
        library, batched = AsyncPostgresSaver(pool), BatchedPostgresSaver(pool)
        ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
        await _replay(library, calls, theirs)
        await _replay(batched, calls, ours)

        expected = _rows(postgres_url, theirs, batched.serde)
        got = _rows(postgres_url, ours, batched.serde)
        assert len(expected["blobs"]) >= 8 and len(expected["writes"]) > 40  # a meaningful run
        assert len(got["writes"]) <= len(expected["writes"]) // 4  # a task's writes: one row
        assert _unpacked(got["writes"], batched.serde) == expected["writes"]
        # a checkpoint is stored whole in its row; blobs only hold delta snapshots
        assert got["blobs"] and all(b in expected["blobs"] for b in got["blobs"])
        assert all(isinstance(b[-1], _DeltaSnapshot) for b in got["blobs"])
        ids = [row[:3] for row in got["checkpoints"]]
        assert ids == [row[:3] for row in expected["checkpoints"]]
        # the metadata JSONB is the library's, but for LangGraph's per-step delta counters,
        # kept with the compressed checkpoint (the key stays, empty)
        counters = "counters_since_delta_snapshot"
        assert all(row[4][counters] == {} for row in got["checkpoints"])
        assert any(row[4][counters] for row in expected["checkpoints"])
        assert [{**row[4], counters: {}} for row in got["checkpoints"]] == [
            {**row[4], counters: {}} for row in expected["checkpoints"]
        ]
        listed = [t async for t in batched.alist({"configurable": {"thread_id": ours}})]
        stock = [t async for t in library.alist({"configurable": {"thread_id": theirs}})]
        assert [t.checkpoint for t in listed] == [t.checkpoint for t in stock]
        assert [t.metadata for t in listed] == [t.metadata for t in stock]
        assert [t.pending_writes for t in listed] == [t.pending_writes for t in stock]

        config = {"configurable": {"checkpoint_ns": ""}}
        read_theirs = await library.aget_tuple(
            {"configurable": {**config["configurable"], "thread_id": theirs}}
        )
        read_ours = await batched.aget_tuple(
            {"configurable": {**config["configurable"], "thread_id": ours}}
        )
        assert read_ours is not None and read_theirs is not None
        assert read_ours.checkpoint == read_theirs.checkpoint
        assert read_ours.pending_writes == read_theirs.pending_writes
        assert read_ours.checkpoint["channel_values"]["outcome"]["success"] is True
    finally:
        await pool.close()


async def test_special_channels_are_upserted_last_write_wins_as_the_library_does(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(checkpoint_url=postgres_url)
    pool = make_pool(postgres_url, settings.checkpoint_pool)
    await pool.open()
    try:
        library, batched = AsyncPostgresSaver(pool), BatchedPostgresSaver(pool)
        await library.setup()
        threads = {"library": str(uuid.uuid4()), "batched": str(uuid.uuid4())}
        for name, saver in (("library", library), ("batched", batched)):
            config = {
                "configurable": {
                    "thread_id": threads[name],
                    "checkpoint_ns": "",
                    "checkpoint_id": "cp-1",
                }
            }
            await saver.aput_writes(config, [(ERROR, "first"), (ERROR, "second")], "task-1")
            await saver.aput_writes(config, [(INTERRUPT, "asked")], "task-1")
            await saver.aput_writes(config, [(INTERRUPT, "asked again")], "task-1")
            await saver.aput_writes(config, [("answer", "kept"), ("trace", [1])], "task-2")
            await saver.aput_writes(config, [("answer", "ignored"), ("trace", [2])], "task-2")
        await batched.aflush()  # task-2's ordinary writes wait for a checkpoint
        library_rows = _rows(postgres_url, threads["library"], batched.serde)["writes"]
        batched_rows = _rows(postgres_url, threads["batched"], batched.serde)["writes"]
        batched_rows = _unpacked(batched_rows, batched.serde)
        assert batched_rows == library_rows
        blobs = {(row[2], row[5]): row[6] for row in batched_rows}
        assert blobs == {
            ("task-1", ERROR): "second",
            ("task-1", INTERRUPT): "asked again",
            ("task-2", "answer"): "kept",
            ("task-2", "trace"): [1],
        }
    finally:
        await pool.close()


async def test_writes_on_a_pool_do_not_wait_for_each_other(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """The library saver holds one lock around every statement, even on a pool; the batched
    saver's writes overlap (here 8 connections busy at once inside `pg_sleep`)."""
    settings = settings_factory(checkpoint_url=postgres_url, checkpoint_pool={"max_size": 8})
    pool = make_pool(postgres_url, settings.checkpoint_pool)
    await pool.open()
    try:
        saver = BatchedPostgresSaver(pool)
        await saver.setup()
        slow = saver._execute  # the one place a statement is sent

        async def sleepy(sql: str, params: dict[str, Any]) -> None:
            await slow("SELECT pg_sleep(0.3)", {})
            await slow(sql, params)

        saver._execute = sleepy  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(
            *(
                saver.aput_writes(
                    {
                        "configurable": {
                            "thread_id": f"t{i}",
                            "checkpoint_ns": "",
                            "checkpoint_id": "cp",
                        }
                    },
                    [(ERROR, i)],  # stored at once (ordinary writes wait for a checkpoint)
                    "task",
                )
                for i in range(8)
            )
        )
        assert loop.time() - started < 1.5  # one after another: 8 × 0.3 s
    finally:
        await pool.close()


def _config(thread_id: str, checkpoint_id: str | None) -> Any:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _checkpoint(checkpoint_id: str) -> Any:
    return {
        "v": 4,
        "id": checkpoint_id,
        "ts": "2026-12-06T00:00:00+00:00",
        "channel_values": {"answer": "a"},
        "channel_versions": {"answer": "a1"},
        "versions_seen": {},
        "updated_channels": ["answer"],
    }


async def test_a_tasks_writes_go_with_the_next_checkpoint_in_one_statement(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """Ordinary writes wait for the checkpoint that follows them and go in its statement; a
    read of the thread, a special write, the storage closing or `HOLD_S` without a
    checkpoint store them on their own. Either way the rows are the library's."""
    settings = settings_factory(checkpoint_url=postgres_url)
    pool = make_pool(postgres_url, settings.checkpoint_pool)
    await pool.open()
    try:
        saver = BatchedPostgresSaver(pool)
        await saver.setup()
        sent: list[str] = []
        execute = saver._execute

        async def counted(sql: str, params: dict[str, Any]) -> None:
            sent.append(sql)
            await execute(sql, params)

        saver._execute = counted  # type: ignore[method-assign]
        thread = str(uuid.uuid4())
        await saver.aput(_config(thread, None), _checkpoint("cp-1"), {}, {"answer": "a1"})
        await saver.aput_writes(_config(thread, "cp-1"), [("answer", "b"), ("trace", [1])], "t1")
        await saver.aput_writes(_config(thread, "cp-1"), [("answer", "c")], "t2")
        assert len(sent) == 1 and _rows(postgres_url, thread, saver.serde)["writes"] == []
        await saver.aput(_config(thread, "cp-1"), _checkpoint("cp-2"), {}, {"answer": "a2"})
        assert len(sent) == 2  # the two tasks' writes went with cp-2
        writes = _unpacked(_rows(postgres_url, thread, saver.serde)["writes"], saver.serde)
        assert [(w[1], w[2], w[4], w[5], w[6]) for w in writes] == [
            ("cp-1", "t1", 0, "answer", "b"),
            ("cp-1", "t1", 1, "trace", [1]),
            ("cp-1", "t2", 0, "answer", "c"),
        ]

        # read before any checkpoint follows: the read stores them first
        await saver.aput_writes(_config(thread, "cp-2"), [("answer", "d")], "t3")
        found = await saver.aget_tuple(_config(thread, "cp-2"))
        assert found is not None and found.pending_writes == [("t3", "answer", "d")]

        # a special write stores what is held for its checkpoint, then itself
        await saver.aput_writes(_config(thread, "cp-2"), [("answer", "e")], "t4")
        await saver.aput_writes(_config(thread, "cp-2"), [(ERROR, "boom")], "t5")
        writes = _unpacked(_rows(postgres_url, thread, saver.serde)["writes"], saver.serde)
        channels = [w[5] for w in writes]
        assert channels[-2:] == ["answer", ERROR] or channels[-2:] == [ERROR, "answer"]
        assert len(channels) == 6

        # nothing follows: stored after HOLD_S
        await saver.aput_writes(_config(thread, "cp-2"), [("answer", "f")], "t6")
        await asyncio.sleep(HOLD_S + 0.3)
        assert len(_unpacked(_rows(postgres_url, thread, saver.serde)["writes"], saver.serde)) == 7
        assert saver._held == {}
    finally:
        await pool.close()


async def test_a_run_sends_one_statement_a_step(
    postgres_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """A sales run: every task's writes go with the checkpoint after it, so the run sends
    one statement per checkpoint (before: one more per task)."""
    settings = settings_factory(model="scripted:sales", checkpoint_url=postgres_url)
    async with open_agent(settings) as agent:
        saver = agent.graph.checkpointer
        assert isinstance(saver, BatchedPostgresSaver)
        sent: list[str] = []
        puts: list[str] = []
        execute, put = saver._execute, saver.aput

        async def counted(sql: str, params: dict[str, Any]) -> None:
            sent.append(sql)
            await execute(sql, params)

        async def counted_put(*args: Any) -> Any:
            puts.append("put")
            return await put(*args)

        saver._execute = counted  # type: ignore[method-assign]
        saver.aput = counted_put  # type: ignore[method-assign]
        result = await agent.arun(SALES_QUESTION)
        assert result.success, result.error
        assert len(puts) >= 6 and len(sent) == len(puts), sent
        state = await agent.astate(result.thread_id)
        assert state["outcome"]["success"] and len(state["messages"]) >= 6

"""A task's ordinary writes are one stored row (`keel.checkpoints.packed_writes`; one entry in
the memory saver, `keel.checkpoints.memory_saver`), and every
read path gives LangGraph what the stock rows gave it: the pending writes of each checkpoint
(`aget_tuple`, `alist`) and the delta channels' history. Checkpoints written by main before
the change (df80c4d: one row per write; `tests/fixtures/checkpoints_main_df80c4d.*`) read,
resume, fork and continue.

The fixtures were written by main at df80c4d: the sales question twice on thread
`finished-run`, and once with `sql_query` needing approval on `approval-pending`, on SQLite
(the file) and on Postgres (its three tables' rows, dumped to JSON: bytes as base64).
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg.types.json import Jsonb

from keel.checkpoints.compression import compressed
from keel.checkpoints.memory_saver import KeelMemorySaver
from keel.checkpoints.packed_writes import PACKED_CHANNEL
from keel.checkpoints.postgres_saver import BatchedPostgresSaver
from keel.checkpoints.savers import make_pool
from keel.checkpoints.sqlite_saver import KeelSqliteSaver
from keel.config import Settings
from keel.observability.run_trace import load_trace
from keel.runtime import open_agent
from tests.conftest import fresh_database
from tests.sales_truth import SALES_QUESTION

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SQLITE_FIXTURE = FIXTURES / "checkpoints_main_df80c4d.sqlite"
POSTGRES_FIXTURE = FIXTURES / "checkpoints_main_df80c4d.postgres.json"

Call = tuple[str, tuple[Any, ...]]


async def _recorded_run(settings: Settings) -> list[Call]:
    """The `aput` / `aput_writes` calls of two sales runs on one thread, as LangGraph
    made them."""
    calls: list[Call] = []
    async with open_agent(settings) as agent:
        saver: Any = agent.graph.checkpointer
        put, put_writes = saver.aput, saver.aput_writes

        async def recording_put(config: Any, *rest: Any) -> Any:
            calls.append(("put", (_plain(config), *copy.deepcopy(rest))))
            return await put(config, *rest)

        async def recording_writes(config: Any, *rest: Any) -> Any:
            calls.append(("writes", (_plain(config), *copy.deepcopy(rest))))
            return await put_writes(config, *rest)

        saver.aput = recording_put
        saver.aput_writes = recording_writes
        for _ in range(2):
            result = await agent.arun(SALES_QUESTION, thread_id="recorded")
            assert result.success, result.error
    return calls


def _plain(config: Any) -> dict[str, Any]:
    return {"configurable": dict(config["configurable"])}


async def _replay(saver: BaseCheckpointSaver[Any], calls: list[Call], thread_id: str) -> None:
    for kind, (config, *rest) in calls:
        config = {"configurable": {**config["configurable"], "thread_id": thread_id}}
        if kind == "put":
            await saver.aput(config, *rest)
        else:
            await saver.aput_writes(config, *rest)


@asynccontextmanager
async def _savers(
    backend: str, tmp_path: Path, url: str | None
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], BaseCheckpointSaver[Any], Any]]:
    """(stock saver, Keel's saver, a function counting a thread's write rows)."""
    if backend == "memory":
        theirs, ours = InMemorySaver(), KeelMemorySaver()

        def entries(thread_id: str) -> int:
            return sum(
                len(stored)
                for saver in (theirs, ours)
                for key, stored in saver.writes.items()
                if key[0] == thread_id
            )

        yield theirs, ours, entries
        return
    if backend == "sqlite":
        path = tmp_path / "both.sqlite"
        async with KeelSqliteSaver.from_conn_string(str(path)) as keel:
            await keel.setup()
            stock = AsyncSqliteSaver(keel.conn, serde=compressed())

            def count(thread_id: str) -> int:
                with sqlite3.connect(path) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM writes WHERE thread_id = ?", (thread_id,)
                    ).fetchone()
                return int(row[0])

            yield stock, keel, count
        return
    assert url is not None
    pool = make_pool(url, Settings().checkpoint_pool)
    await pool.open()
    try:
        batched = BatchedPostgresSaver(pool)
        await batched.setup()

        def pg_count(thread_id: str) -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s", (thread_id,)
                ).fetchone()
            return int(row[0]) if row else 0

        yield AsyncPostgresSaver(pool, serde=compressed()), batched, pg_count
    finally:
        await pool.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
async def test_packed_writes_read_back_as_the_stock_rows_do(
    backend: str,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Two sales runs' checkpoint calls, replayed through the stock saver (a row per write)
    and Keel's (a row per task): Keel's stores a quarter of the write rows or fewer, and
    every checkpoint's pending writes and delta-channel history read back the same."""
    url = str(request.getfixturevalue("postgres_url")) if backend == "postgres" else None
    settings = settings_factory(model="scripted:sales", checkpoint_url="memory://")
    calls = await _recorded_run(settings)
    async with _savers(backend, tmp_path, url) as (stock, keel, count):
        theirs, ours = str(uuid.uuid4()), str(uuid.uuid4())
        await _replay(stock, calls, theirs)
        await _replay(keel, calls, ours)
        if isinstance(keel, BatchedPostgresSaver):
            await keel.aflush()
        assert count(theirs) > 40 and count(ours) <= count(theirs) // 4

        expected = [t async for t in stock.alist({"configurable": {"thread_id": theirs}})]
        got = [t async for t in keel.alist({"configurable": {"thread_id": ours}})]
        assert len(got) == len(expected) >= 10
        assert sum(len(t.pending_writes or []) for t in got) > 40
        for mine, stocks in zip(got, expected, strict=True):
            assert mine.pending_writes == stocks.pending_writes
            assert mine.checkpoint == stocks.checkpoint
            assert mine.metadata == stocks.metadata
            for saver, found in ((keel, mine), (stock, stocks)):
                assert (await saver.aget_tuple(found.config)) == found
            channels = ["messages", "trace", "context_summary"]
            history = await keel.aget_delta_channel_history(config=mine.config, channels=channels)
            stock_history = await stock.aget_delta_channel_history(
                config=stocks.config, channels=channels
            )
            assert history == stock_history
        newest = await keel.aget_delta_channel_history(config=got[0].config, channels=["trace"])
        assert len(newest["trace"]["writes"]) >= 8  # two runs' trace rows, from packed rows


@pytest.fixture
def sqlite_fixture(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "old.sqlite"
    shutil.copy(SQLITE_FIXTURE, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def postgres_fixture(postgres_url: str) -> Iterator[str]:
    """A new database holding the rows main wrote at df80c4d on Postgres."""
    del postgres_url  # the server is up (else a skip, or a failure under CI)
    dump = json.loads(POSTGRES_FIXTURE.read_text())
    with fresh_database("keel_df80c4d") as (url, _):
        saver_setup(url)
        with psycopg.connect(url) as conn:
            for table, content in dump.items():
                columns = content["columns"]
                marks = ", ".join(["%s"] * len(columns))
                for row in content["rows"]:
                    values = [
                        _column(table, name, value)
                        for name, value in zip(columns, row, strict=True)
                    ]
                    conn.execute(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values
                    )
        yield url


def _column(table: str, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in ("checkpoint", "metadata"):
        return Jsonb(value)
    if name == "blob":
        return base64.b64decode(value)
    return value


def saver_setup(url: str) -> None:
    """The library's tables (Keel's storage adds its journal when it opens)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()


def _write_rows(url: str) -> list[tuple[str, str]]:
    """(thread_id, channel) of every write row."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT thread_id, channel FROM writes").fetchall()
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT thread_id, channel FROM checkpoint_writes").fetchall()


@pytest.mark.parametrize("store", ["sqlite_fixture", "postgres_fixture"])
async def test_checkpoints_written_by_main_before_packing_resume_and_go_on(
    store: str, settings_factory: Callable[..., Settings], request: pytest.FixtureRequest
) -> None:
    """The df80c4d threads (a row per write) read back whole; the pending approval, once
    given, finishes its run; the finished thread takes a third question, whose writes are
    packed, and its history, trace and a fork from an old checkpoint read across old rows
    and new."""
    url = str(request.getfixturevalue(store))
    old_rows = _write_rows(url)
    assert old_rows and all(ch != PACKED_CHANNEL for _, ch in old_rows)
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=url, approval_tools=["sql_query"]
    )
    async with open_agent(settings) as agent:
        done = await agent.astate("finished-run")
        assert done["outcome"]["success"] and len(done["messages"]) == 8
        old_steps = await load_trace(agent.graph, "finished-run")
        assert len(old_steps) == len(done["trace"]) == 8
        waiting = await agent.astate("approval-pending")
        assert len(waiting["messages"]) == 2
        assert [p["tool"] for p in await agent.apending("approval-pending")] == ["sql_query"]

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

        history_before = await agent.ahistory("finished-run")
        again = await agent.arun(SALES_QUESTION, thread_id="finished-run")
        assert again.success  # the scripted model answers from the results it has
        grown = await agent.astate("finished-run")
        assert grown["messages"][:8] == done["messages"] and len(grown["messages"]) == 10
        assert grown["trace"][: len(done["trace"])] == done["trace"]
        steps = await load_trace(agent.graph, "finished-run")
        assert len({s.run_id for s in steps}) == 3 and len(steps) == len(grown["trace"])
        history = await agent.ahistory("finished-run")
        assert len(history) > len(history_before)
        counts = [h.messages for h in reversed(history)]
        assert counts == sorted(counts)

        first_answer = next(h for h in reversed(history) if h.messages == 6)
        assert (
            len((await agent.astate("finished-run", first_answer.checkpoint_id))["messages"]) == 6
        )
        forked = await agent.afork("finished-run", first_answer.checkpoint_id, values={})
        assert forked.success
        forked_state = await agent.astate("finished-run")
        assert forked_state["messages"] == done["messages"][:6]
        assert len(await load_trace(agent.graph, "finished-run")) == len(forked_state["trace"])

    new_rows = [row for row in _write_rows(url) if row not in old_rows]
    assert any(ch == PACKED_CHANNEL for _, ch in new_rows)

"""Keel's SQLite and Postgres savers compress each checkpoint against a base (an earlier
checkpoint's plaintext, stored once apart and never changed): a checkpoint takes half the
bytes (on Postgres, a sixth: the stock JSONB row was uncompressed), and everything that
reads checkpoints keeps working from a new process, after pruning (which deletes ancestors
and rewrites the oldest kept checkpoint in place), after a fork, a copy and a thread's
deletion."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keel.checkpoints.bases import BASE_USES
from keel.checkpoints.retention import RetentionPolicy, storage_bytes
from keel.checkpoints.thread_copy import copy_thread
from keel.config import Settings
from keel.observability.run_trace import load_trace
from keel.runtime import open_agent
from tests.conftest import fresh_database
from tests.sales_truth import SALES_QUESTION


class Store:
    """A test's own store, and plain SQL on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgresql://")
        self.type_column = "keel_type" if self.postgres else "type"
        self.checkpoint_column = "keel_checkpoint" if self.postgres else "checkpoint"

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.postgres:
            with psycopg.connect(self.url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql, params).fetchall()

    def types(self, thread_id: str) -> list[str]:
        sql = f"SELECT {self.type_column} FROM checkpoints WHERE thread_id = ?"
        return [t for (t,) in self.rows(sql, thread_id)]

    def bases(self, thread_id: str) -> set[str]:
        sql = "SELECT base_id FROM keel_checkpoint_bases WHERE thread_id = ?"
        return {b for (b,) in self.rows(sql, thread_id)}

    def used_bases(self, thread_id: str) -> set[str]:
        """The bases the thread's checkpoints and writes are compressed against."""
        writes = "checkpoint_writes" if self.postgres else "writes"
        found = self.rows(f"SELECT type FROM {writes} WHERE thread_id = ?", thread_id)
        return {
            t.removeprefix("msgpack+zb:")
            for t in [*self.types(thread_id), *(t for (t,) in found)]
            if t and t.startswith("msgpack+zb:")
        }

    def checkpoint_bases(self, thread_id: str) -> set[str]:
        return {
            t.removeprefix("msgpack+zb:")
            for t in self.types(thread_id)
            if t and t.startswith("msgpack+zb:")
        }


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
        return
    request.getfixturevalue("postgres_url")  # the server is up (else skip / CI failure)
    with fresh_database("keel_bases") as (url, _):
        yield Store(url)


async def _snapshot(agent: Any, thread_id: str) -> dict[str, Any]:
    """Everything a user can read of a thread: state, history (with each checkpoint's
    state), the trace."""
    history = await agent.ahistory(thread_id)
    return {
        "state": await agent.astate(thread_id),
        "history": [(h.checkpoint_id, h.messages) for h in history],
        "states": [await agent.astate(thread_id, h.checkpoint_id) for h in history],
        "trace": [(s.node, s.run_id) for s in await load_trace(agent.graph, thread_id)],
    }


async def test_checkpoints_are_compressed_against_bases_and_read_from_a_new_process(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    settings = settings_factory(model="scripted:sales", checkpoint_url=store.url)
    async with open_agent(settings) as agent:
        for _ in range(4):
            assert (await agent.arun(SALES_QUESTION, thread_id="t")).success
        before = await _snapshot(agent, "t")
        assert agent.storage is not None
        stored = await storage_bytes(agent.storage, "t")

    types = store.types("t")
    assert len(types) >= 20 and all(t.startswith("msgpack+zb:") for t in types)
    bases = store.checkpoint_bases("t")
    # a run's checkpoints share a base, started by its input checkpoint
    assert len(bases) <= 4 + len(types) // BASE_USES
    assert store.bases("t") == bases == store.used_bases("t")  # writes use them too
    packed = store.rows(
        f"SELECT type FROM {'checkpoint_writes' if store.postgres else 'writes'}"
        " WHERE channel = '__keel_writes__'"
    )
    assert packed and all(t.startswith("msgpack+zb:") for (t,) in packed)
    column = store.checkpoint_column
    checkpoint_bytes = store.rows(f"SELECT sum(length({column})) FROM checkpoints")[0][0]
    base_bytes = store.rows("SELECT sum(length(value)) FROM keel_checkpoint_bases")[0][0]
    # each alone: ~620 bytes; with a base per run of five checkpoints, ~420
    assert (checkpoint_bytes + base_bytes) / len(types) < 450
    assert stored > checkpoint_bytes + base_bytes  # storage_bytes counts the bases

    async with open_agent(settings) as agent:  # a new saver: no base in memory
        assert await _snapshot(agent, "t") == before
        assert (await agent.arun(SALES_QUESTION, thread_id="t")).success
        assert len((await agent.astate("t"))["messages"]) == len(before["state"]["messages"]) + 2


async def test_writes_stored_before_their_checkpoint_are_compressed_against_a_base(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    """Under durability "async" LangGraph may store a task's writes before the checkpoint
    they belong to: they are compressed against the last stored checkpoint's base (they
    were stored on their own, ~30 % larger), and read back from a new process."""
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=store.url, durability="async"
    )
    async with open_agent(settings) as agent:
        for _ in range(3):
            assert (await agent.arun(SALES_QUESTION, thread_id="t")).success
        before = await _snapshot(agent, "t")

    packed = store.rows(
        f"SELECT type FROM {'checkpoint_writes' if store.postgres else 'writes'}"
        " WHERE channel = '__keel_writes__'"
    )
    assert len(packed) >= 10 and all(t.startswith("msgpack+zb:") for (t,) in packed)
    assert store.bases("t") == store.used_bases("t")  # every base a write names is stored
    async with open_agent(settings) as agent:  # a new saver: no base in memory
        assert await _snapshot(agent, "t") == before


async def test_pruning_forking_copying_and_deleting_keep_every_kept_checkpoint_readable(
    settings_factory: Callable[..., Settings], store: Store
) -> None:
    settings = settings_factory(model="scripted:sales", checkpoint_url=store.url)
    async with open_agent(settings) as agent:
        for _ in range(3):
            assert (await agent.arun(SALES_QUESTION, thread_id="t")).success
        history = await agent.ahistory("t")
        first_answer = next(h for h in reversed(history) if h.messages == 6)
        forked = await agent.afork("t", first_answer.checkpoint_id, values={})
        assert forked.success
        assert agent.storage is not None
        copied = await copy_thread(agent.storage.saver, "t", "copy")
        assert copied == len(await agent.ahistory("t"))
        kept = await _snapshot(agent, "t")
        bases_before = store.bases("t")

        report = await agent.aprune(RetentionPolicy(keep_last=3))
        assert report.checkpoints_deleted > 0
        pruned = await _snapshot(agent, "t")
        assert pruned["state"] == kept["state"] and len(pruned["history"]) == 3
        assert pruned["states"] == kept["states"][:3]
        bases_after = store.bases("t")
        assert bases_before - bases_after  # the bases only deleted checkpoints used: gone
        assert bases_after == store.used_bases("t")

    async with open_agent(settings) as agent:  # and from a new process
        assert (await _snapshot(agent, "t"))["states"] == pruned["states"]
        assert (await agent.astate("copy"))["messages"] == kept["state"]["messages"]
        assert (await agent.arun(SALES_QUESTION, thread_id="t")).success
        assert agent.storage is not None
        await agent.storage.saver.adelete_thread("copy")
    assert store.bases("copy") == set()
    assert store.used_bases("t") <= store.bases("t")

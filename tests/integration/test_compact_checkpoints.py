"""Keel's savers write short channel versions and compressed values, and go on from
checkpoints written with the stock savers' long versions and plain values
(`tests/fixtures/checkpoints_main_08eff99.sqlite`)."""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from keel.checkpoints.compression import ZlibCipher, compressed, dictionary
from keel.checkpoints.sqlite_saver import KeelSqliteSaver
from keel.checkpoints.versions import compact_version, counter_of
from keel.config import Settings
from keel.observability.run_trace import load_trace
from keel.runtime import open_agent

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_main_08eff99.sqlite"
SALES = "Which 3 products had the highest revenue last month, and what was their total revenue?"


def stock_version(counter: int) -> str:
    """A version as LangGraph's stock savers write it."""
    return f"{counter:032}.{random.random():016}"


def test_compact_versions_sort_as_their_counters_and_after_every_stock_version() -> None:
    counters = [*range(1, 2000), 9_999, 10_000, 123_456, 10**12]
    for tagged in (False, True):
        versions = [compact_version(n, tagged=tagged) for n in counters]
        assert sorted(versions) == versions
        assert [counter_of(v) for v in versions] == counters
        assert min(versions) > stock_version(10**20)
    assert compact_version(12, tagged=False) == "b12"
    assert len(compact_version(12, tagged=True)) == len("b12.") + 6
    assert len({compact_version(7, tagged=True) for _ in range(1000)}) == 1000
    assert counter_of(stock_version(41)) == 41 and counter_of(None) == 0


def test_the_compression_dictionary_is_frozen() -> None:
    """Every `+z1` value needs this exact dictionary to be read back: changing it is a new
    name (`z2`), never an edit."""
    assert hashlib.sha256(dictionary()).hexdigest()[:16] == "40832f54eff0781b"


def test_compressed_values_read_back_and_plain_ones_still_read() -> None:
    serde, plain = compressed(), JsonPlusSerializer()
    values: list[Any] = [
        None,
        3,
        "short",
        {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "cost_usd": 0.0},
        [
            HumanMessage(SALES),
            AIMessage("", tool_calls=[{"name": "sql_query", "args": {}, "id": "c1"}]),
        ],
    ]
    for value in values:
        typ, data = serde.dumps_typed(value)
        assert serde.loads_typed((typ, data)) == value
        assert serde.loads_typed(plain.dumps_typed(value)) == value  # written before
    typ, data = serde.dumps_typed(values[-1])
    assert typ == "msgpack+z1" and len(data) < len(plain.dumps_typed(values[-1])[1]) * 0.7
    with pytest.raises(ValueError, match="unknown checkpoint compression"):
        ZlibCipher().decrypt("z9", data)


async def _versions(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(type, channel_versions) of every checkpoint of the file, oldest first (read by
    Keel's saver: a checkpoint may be compressed against a base it stores apart)."""
    with sqlite3.connect(path) as conn:
        types = dict(
            conn.execute(
                "SELECT checkpoint_id, type FROM checkpoints WHERE thread_id = 'finished-run'"
            ).fetchall()
        )
    async with KeelSqliteSaver.from_conn_string(str(path)) as saver:
        found = [t async for t in saver.alist({"configurable": {"thread_id": "finished-run"}})]
    return [(types[t.checkpoint["id"]], t.checkpoint["channel_versions"]) for t in reversed(found)]


async def test_a_thread_written_with_stock_versions_goes_on_with_compact_ones(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """The 08eff99 file's finished thread takes a new question: the new checkpoints are
    compressed and hold short versions, each greater than every version the old ones
    hold, so LangGraph runs the new turn's nodes (and only them) in order, and the whole
    history, old and new, reads back. (The scripted model answers from the results
    already in the conversation: reason, then finish.)"""
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, path)
    old = await _versions(path)
    assert all(t == "msgpack" for t, _ in old)
    oldest_max = max(v for _, versions in old for v in versions.values())
    assert len(oldest_max) > 40  # the stock saver's versions

    settings = settings_factory(model="scripted:sales", checkpoint_url=f"sqlite:///{path}")
    async with open_agent(settings) as agent:
        before = await agent.astate("finished-run")
        result = await agent.arun(SALES, thread_id="finished-run")
        assert result.success and "Their total revenue was" in result.output
        after = await agent.astate("finished-run")
        assert after["messages"][:6] == before["messages"] and len(after["messages"]) == 8
        steps = await load_trace(agent.graph, "finished-run")
        assert [s.node for s in steps[len(before["trace"]) :]] == ["reason", "finish"]
        history = await agent.ahistory("finished-run")
        assert [h.messages for h in reversed(history)] == sorted(h.messages for h in history)

    new = (await _versions(path))[len(old) :]
    assert new and all(t.startswith(("msgpack+z1", "msgpack+zb:")) for t, _ in new)
    written = {v for _, versions in new for v in versions.values()} - {
        v for _, versions in old for v in versions.values()
    }
    assert written and all(len(v) <= 4 and v > oldest_max for v in written)
    last = (await _versions(path))[-1][1]
    assert counter_of(max(last.values())) == counter_of(oldest_max) + len(new)

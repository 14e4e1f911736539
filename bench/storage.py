"""Checkpoint bytes each conversation turn adds: Keel beside raw LangGraph, per saver.

```bash
.venv/bin/python -m bench.storage                       # SQLite and Postgres, 50 turns; ~2 min
.venv/bin/python -m bench.storage --turns 16 --at 2 8 16 --savers sqlite
.venv/bin/python -m bench.storage --exit                # also Keel under durability "exit"
```
One thread, the sales question every turn, no pruning: the scripted model calls
`sql_query` for last month's top products, `calculator` for their total, then answers
(three model calls, two tool calls; the same replies on every side; once the history is
long enough for Keel to compact it, Keel also asks the model for a short summary). After each turn
`checkpoints.retention.storage_bytes` sums the bytes of the thread's checkpoints, writes,
(Postgres) blobs and the bases Keel's checkpoints are compressed against. Sides, each on
its own SQLite file or Postgres database:

- `keel`: Keel's agent (`durability="sync"`, its own savers);
- `keel exit` (with `--exit`): the same with `durability="exit"` (a checkpoint when the run
  ends, not after every step);
- `raw delta`: LangGraph's textbook loop with `messages` in a `DeltaChannel`, stock saver;
- `raw whole`: the same loop with `MessagesState` (`add_messages`: the list stored whole).

Printed: the bytes turn N added, for each N in `--at`; the median of the last ten turns;
the mean over turns 2..last (periodic full snapshots included: a `DeltaChannel` stores its
whole value once every `snapshot_frequency` updates: with the sales question, Keel's and
raw LangGraph's `messages` at turns 17, 34 and 50, Keel's `trace` at 13, 25, 38 and 50); the total;
and the CPU milliseconds of one `aget_state` of the thread after the last turn (a
`DeltaChannel` replays the writes since its snapshot).
Postgres needs 127.0.0.1:5432; throwaway databases are created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import MessagesState
from langgraph.graph.message import _messages_delta_reducer

from bench.graph_cpu import scratch_database
from bench.workload import QUESTION, keel_settings, langchain_tools, stock_saver, textbook_graph
from keel.checkpoints.journal import MemoryJournal
from keel.checkpoints.retention import storage_bytes
from keel.checkpoints.savers import Storage
from keel.config import ObservabilitySettings
from keel.observability.logs import configure_logging
from keel.runtime import open_agent
from keel.testing.policies import TOP_PRODUCTS_SQL
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools import ToolRegistry, calculator, sql_query

SIDES = ("keel", "raw delta", "raw whole")
Turn = Callable[[str], Awaitable[None]]
"""Runs one turn (the question) on the bench thread."""


class DeltaMessagesState(TypedDict):
    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]


SUMMARY = (
    "The user asked for last month's three products with the highest revenue and their "
    "total, several times. Each time sql_query returned the same three products with their "
    "revenue, calculator added the three revenues up, and the answer listed the products "
    "and the total. Nothing else was asked; no tool failed."
)


def sales_turn(messages: list[BaseMessage], info: CallInfo) -> AIMessage | str:
    """One turn of the sales question: SQL, calculator, answer (from this turn's results).
    Asked to summarize (Keel compacts a long history), a short summary, as a model would."""
    if isinstance(messages[0], SystemMessage) and "Summarize" in str(messages[0].content):
        return SUMMARY
    start = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    turn = sum(isinstance(m, HumanMessage) for m in messages)
    seen = [str(m.content) for m in messages[start:] if isinstance(m, ToolMessage)]
    if not seen:
        call = {"name": "sql_query", "args": {"query": TOP_PRODUCTS_SQL}, "id": f"sql_{turn}"}
        return AIMessage(content="", tool_calls=[call])
    rows = json.loads(seen[0])["rows"]
    if len(seen) == 1:
        expression = " + ".join(str(r[1]) for r in rows) or "0"
        call = {"name": "calculator", "args": {"expression": expression}, "id": f"calc_{turn}"}
        return AIMessage(content="", tool_calls=[call])
    ranked = "; ".join(f"{i}. {r[0]} (${r[1]})" for i, r in enumerate(rows, 1))
    return (
        f"The top {len(rows)} products by revenue last month were: {ranked}. "
        f"Their total revenue was {seen[1]}."
    )


@asynccontextmanager
async def keel_side(
    url: str, home: Path, thread_id: str, durability: str = "sync"
) -> AsyncIterator[tuple[Turn, Any]]:
    tools = ToolRegistry.of([sql_query, calculator])
    # validated by the settings (LangGraph itself runs an unknown durability as "async")
    settings = keel_settings(url, home, durability=durability)
    async with open_agent(settings, model=FunctionModel(fn=sales_turn), tools=tools) as agent:
        assert agent.storage is not None

        async def turn(question: str) -> None:
            result = await agent.arun(question, thread_id=thread_id)
            assert result.success, result.error

        async def read() -> None:
            await agent.astate(thread_id)

        yield turn, (agent.storage, read)


@asynccontextmanager
async def raw_side(
    url: str, home: Path, thread_id: str, *, delta: bool
) -> AsyncIterator[tuple[Turn, Any]]:
    settings = keel_settings(url, home)
    tools = langchain_tools(settings)
    model = FunctionModel(fn=sales_turn)
    state = DeltaMessagesState if delta else MessagesState
    async with AsyncExitStack() as stack:
        saver = await stack.enter_async_context(stock_saver(url))
        graph = textbook_graph(model, tools, "", state=state).compile(checkpointer=saver)
        config = RunnableConfig(configurable={"thread_id": thread_id})
        if url.startswith("sqlite"):
            storage = Storage("sqlite", saver, MemoryJournal())
        else:
            from psycopg_pool import AsyncConnectionPool

            pool = await stack.enter_async_context(AsyncConnectionPool(url, min_size=1))
            storage = Storage("postgres", saver, MemoryJournal(), pool)

        async def turn(question: str) -> None:
            out = await graph.ainvoke(
                {"messages": [HumanMessage(question)]}, config, durability="sync"
            )
            assert str(out["messages"][-1].content).startswith("The top ")

        async def read() -> None:
            await graph.aget_state(config)

        yield turn, (storage, read)


@asynccontextmanager
async def side_store(saver: str, side: str, tmp: Path) -> AsyncIterator[str]:
    if saver == "sqlite":
        yield f"sqlite:///{tmp / (side.replace(' ', '_') + '.sqlite')}"
    else:
        async with scratch_database(side.replace(" ", "_")) as url:
            yield url


async def measure(saver: str, side: str, turns: int, tmp: Path) -> tuple[list[int], float]:
    """The thread's bytes after each turn, and the CPU ms of one state read at the end."""
    thread_id = "storage-bench"
    async with side_store(saver, side, tmp) as url:
        if side.startswith("keel"):
            durability = "exit" if side == "keel exit" else "sync"
            opened = keel_side(url, tmp / "home", thread_id, durability)
        else:
            opened = raw_side(url, tmp / "home", thread_id, delta=side == "raw delta")
        async with opened as (turn, (storage, read)):
            sizes = []
            for n in range(1, turns + 1):
                await turn(f"{QUESTION} (turn {n})")
                sizes.append(await storage_bytes(storage, thread_id))
            await read()
            started = time.process_time()
            for _ in range(5):
                await read()
            read_ms = (time.process_time() - started) / 5 * 1000
    return sizes, read_ms


def added(sizes: list[int]) -> list[int]:
    """Bytes each turn added; `added[n]` is turn n's (index 0 unused: turn 1 also pays for
    the store's first rows)."""
    return [0, sizes[0], *(b - a for a, b in itertools.pairwise(sizes))]


async def main(turns: int, at: list[int], savers: list[str], exit_side: bool = False) -> int:
    configure_logging(ObservabilitySettings(log_level="warning"))
    at = [n for n in at if 2 <= n <= turns]
    head = " ".join(f"{f'turn {n}':>9}" for n in at)
    print(f"bytes added per turn, sales question every turn, no pruning, {turns} turns\n")
    print(
        f"{'saver':<9} {'side':<10} {head} {'median':>9} {'mean':>9} {'total':>11} {'read ms':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for saver in savers:
            for side in ("keel", "keel exit", *SIDES[1:]) if exit_side else SIDES:
                sizes, read_ms = await measure(saver, side, turns, Path(tmp) / saver)
                per_turn = added(sizes)
                mean = (sizes[-1] - sizes[0]) / max(turns - 1, 1)
                median = statistics.median(per_turn[max(2, turns - 9) :])
                cells = " ".join(f"{per_turn[n]:>9,}" for n in at)
                print(
                    f"{saver:<9} {side:<10} {cells} {median:>9,.0f} {mean:>9,.0f} "
                    f"{sizes[-1]:>11,} {read_ms:>8.1f}",
                    flush=True,
                )
    print(f"\nload average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--at", type=int, nargs="+", default=[2, 16, 50])
    parser.add_argument(
        "--savers", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--exit", action="store_true", help='also Keel under durability "exit"')
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.turns, args.at, args.savers, args.exit)))

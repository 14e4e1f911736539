"""Per-step cost of durability: Keel vs raw LangGraph, per saver and durability mode.

```bash
.venv/bin/python bench/durability.py                 # memory, SQLite, Postgres; ~1 min
.venv/bin/python bench/durability.py --runs 10 --savers memory sqlite
```
Both agents use the same scripted model (no latency: what is left is the runtime's own cost)
and a no-op side-effecting tool, 5 tool iterations and a final answer per run, on the same
kind of saver with the same `durability` mode. Raw LangGraph is the textbook loop
(`agent` node → `tools` node → `agent`, `MessagesState`). Keel adds its state bookkeeping,
the `observe` step, validation, the idempotency journal (two committed writes per tool call)
and logging at warning level; "no journal" declares the tool idempotent, which isolates the
journal's share. Reported per agent iteration (one model call + one tool call) and as the
ratio Keel / raw with the same saver and mode. Postgres needs 127.0.0.1:5432; a
throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from keel import ToolRegistry, load_settings, open_agent, open_saver, tool
from keel.config import ObservabilitySettings
from keel.observability.logs import configure_logging
from keel.testing import CallInfo, FunctionModel

ITERATIONS = 5
MODES: tuple[Literal["sync", "async", "exit"], ...] = ("sync", "async", "exit")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def script(messages: list[BaseMessage], info: CallInfo) -> AIMessage | str:
    turn = sum(isinstance(m, AIMessage) for m in messages)
    if turn >= ITERATIONS:
        return "done"
    return AIMessage(
        content="", tool_calls=[{"name": "record", "args": {"n": turn}, "id": f"c{turn}"}]
    )


@tool
def record(n: int) -> str:
    """A side effect that costs nothing (so only the runtime is measured)."""
    return f"recorded {n}"


@tool(name="record", idempotent=True)
def record_pure(n: int) -> str:
    """The same tool declared idempotent: no journal writes."""
    return f"recorded {n}"


def raw_graph() -> StateGraph[Any, Any, Any, Any]:
    model = FunctionModel(fn=script).bind_tools([record.openai_schema()])

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def tools(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        return {
            "messages": [
                ToolMessage(content=f"recorded {c['args']['n']}", tool_call_id=c["id"] or "")
                for c in last.tool_calls
            ]
        }

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges(
        "agent", lambda s: "tools" if s["messages"][-1].tool_calls else END, ["tools", END]
    )
    graph.add_edge("tools", "agent")
    return graph


Run = Callable[[str], Awaitable[None]]


async def interleaved(runners: list[Run], runs: int) -> list[float]:
    """Median seconds per agent iteration for each runner. Runs alternate between runners,
    so a noisy neighbour slows all of them alike; one warm-up run each is not counted."""
    samples: list[list[float]] = [[] for _ in runners]
    for round_ in range(runs + 1):
        for i, run in enumerate(runners):
            started = time.perf_counter()
            await run(uuid.uuid4().hex)
            if round_:
                samples[i].append((time.perf_counter() - started) / ITERATIONS)
    return [statistics.median(s) for s in samples]


@asynccontextmanager
async def raw_runner(url: str, mode: str) -> AsyncIterator[Run]:
    async with open_saver(url) as saver:
        graph = raw_graph().compile(checkpointer=saver)

        async def run(thread_id: str) -> None:
            out = await graph.ainvoke(
                {"messages": [("user", "go")]},
                {"configurable": {"thread_id": thread_id}},
                durability=mode,  # type: ignore[arg-type]
            )
            assert out["messages"][-1].content == "done"

        yield run


@asynccontextmanager
async def keel_runner(url: str, mode: str, home: Path, *, journal: bool) -> AsyncIterator[Run]:
    settings = load_settings(
        model="scripted:echo",
        checkpoint_url=url,
        durability=mode,
        home=home,
        observability={"log_level": "warning"},
    )
    tools = ToolRegistry.of([record if journal else record_pure])
    async with open_agent(settings, model=FunctionModel(fn=script), tools=tools) as agent:

        async def run(thread_id: str) -> None:
            result = await agent.arun("go", thread_id=thread_id)
            assert result.success and result.output == "done", result.error

        yield run


@asynccontextmanager
async def saver_urls(savers: list[str], tmp: Path) -> AsyncIterator[dict[str, str]]:
    urls = {}
    if "memory" in savers:
        urls["memory"] = "memory://"
    if "sqlite" in savers:
        urls["sqlite"] = f"sqlite:///{tmp / 'bench.sqlite'}"
    dbname = None
    if "postgres" in savers:
        import psycopg

        dbname = f"keel_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        urls["postgres"] = PG_ADMIN.rpartition("/")[0] + "/" + dbname
    try:
        yield urls
    finally:
        if dbname:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def main(runs: int, savers: list[str], budget_s: float) -> int:
    configure_logging(ObservabilitySettings(log_level="warning"))
    deadline = time.monotonic() + budget_s
    print(
        f"ms per agent iteration (model call + tool call), median of {runs} runs × "
        f"{ITERATIONS} iterations\n"
    )
    print(
        f"{'saver':<9} {'mode':<6} {'raw LangGraph':>14} {'Keel':>8} {'Keel/raw':>9} "
        f"{'Keel, no journal':>17} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with saver_urls(savers, Path(tmp)) as urls:
            for name, url in urls.items():
                for mode in MODES:
                    if time.monotonic() > deadline:
                        print(f"stopped: the {budget_s:.0f} s budget is used up")
                        return 0
                    home = Path(tmp) / "home"
                    async with (
                        raw_runner(url, mode) as raw_run,
                        keel_runner(url, mode, home, journal=True) as keel_run,
                        keel_runner(url, mode, home, journal=False) as pure_run,
                    ):
                        raw, keel, pure = await interleaved([raw_run, keel_run, pure_run], runs)
                    print(
                        f"{name:<9} {mode:<6} {raw * 1000:>14.2f} {keel * 1000:>8.2f} "
                        f"{keel / raw:>8.1f}× {pure * 1000:>17.2f} {pure / raw:>5.1f}×",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--savers", nargs="+", default=["memory", "sqlite", "postgres"])
    parser.add_argument("--budget-s", type=float, default=180.0, help="stop starting new rows")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.runs, args.savers, args.budget_s)))

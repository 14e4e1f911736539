"""Checkpoint storage per conversation turn: unpruned vs `keep_last` retention, per saver.

```bash
.venv/bin/python -m bench.storage                   # SQLite and Postgres, 16 turns; ~30 s
.venv/bin/python -m bench.storage --turns 8 --savers sqlite --keep 1 3
```
One thread, one question per turn. Each turn the scripted model calls a tool once and then
answers (the tool is idempotent, so no journal rows: only checkpoint storage is counted).
After each turn the store is pruned to the last K checkpoints of every thread (no pruning
in the first column), then `checkpoints.retention.storage_bytes` sums the bytes of the
thread's checkpoints, pending writes and (Postgres) blobs. Printed: bytes added by each
turn (turn 2 → last; turn 1 also pays for the store's first checkpoints) and the total.
Postgres needs 127.0.0.1:5432; a throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import uuid
from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from bench.durability import saver_urls
from keel.checkpoints.retention import RetentionPolicy, storage_bytes
from keel.config import ObservabilitySettings, load_settings
from keel.observability.logs import configure_logging
from keel.runtime import open_agent
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools.registry import ToolRegistry, tool


@tool(idempotent=True)
def lookup(topic: str) -> str:
    """Look a topic up (a short, fixed-size result)."""
    return f"{topic}: 42 rows, total 1234.50"


def script(messages: list[BaseMessage], info: CallInfo) -> AIMessage | str:
    """Each turn: one tool call, then an answer of a fixed size."""
    last = messages[-1]
    turn = sum(isinstance(m, HumanMessage) for m in messages)
    if isinstance(last, ToolMessage):
        return f"Turn {turn}: the answer is 42 rows with a total of 1234.50."
    return AIMessage(
        content="",
        tool_calls=[{"name": "lookup", "args": {"topic": f"topic {turn}"}, "id": f"t{turn}"}],
    )


async def sizes_per_turn(url: str, home: Path, turns: int, keep: int | None) -> list[int]:
    """Bytes the thread takes after each turn (pruned to `keep` checkpoints if given)."""
    settings = load_settings(
        model="scripted:echo",
        checkpoint_url=url,
        home=home,
        observability={"log_level": "warning"},
    )
    tools = ToolRegistry.of([lookup])
    thread_id = f"storage-{uuid.uuid4().hex[:8]}"
    sizes = []
    async with open_agent(settings, model=FunctionModel(fn=script), tools=tools) as agent:
        assert agent.storage is not None
        for turn in range(1, turns + 1):
            result = await agent.arun(f"Question number {turn} about sales", thread_id=thread_id)
            assert result.success, result.error
            if keep is not None:
                await agent.aprune(RetentionPolicy(keep_last=keep))
            sizes.append(await storage_bytes(agent.storage, thread_id))
    return sizes


def describe(sizes: list[int]) -> str:
    added = [b - a for a, b in itertools.pairwise(sizes)]
    return f"{added[0]:>7,} → {added[-1]:>7,}  (total {sizes[-1]:>9,})"


async def main(turns: int, savers: list[str], keeps: list[int]) -> int:
    configure_logging(ObservabilitySettings(log_level="warning"))
    policies: list[int | None] = [None, *keeps]
    labels = ["no pruning" if k is None else f"keep_last={k}" for k in policies]
    print(f"bytes added per turn, turn 2 → turn {turns} (and the total after turn {turns})\n")
    print(f"{'saver':<9} " + " ".join(f"{label:<37}" for label in labels))
    with tempfile.TemporaryDirectory() as tmp:
        async with saver_urls([s for s in savers if s != "memory"], Path(tmp)) as urls:
            for name, url in urls.items():
                cells = []
                for keep in policies:
                    sizes = await sizes_per_turn(url, Path(tmp) / "home", turns, keep)
                    cells.append(describe(sizes))
                print(f"{name:<9} " + " ".join(f"{c:<37}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument("--savers", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--keep", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.turns, args.savers, args.keep)))

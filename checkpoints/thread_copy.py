"""Copy a thread's checkpoints to a new thread id, through any saver's public API.

LangGraph declares `BaseCheckpointSaver.acopy_thread`, but none of the installed savers
(memory, SQLite, Postgres) implements it, so the copy reads the source's checkpoints with
`alist` and writes each one, its parent link and its pending writes under the target with
`aput` / `aput_writes`. The whole history is copied (every namespace, oldest first), so the
target's state, history and any interrupted step are the source's, checkpoint ids included.

The idempotency journal is copied too (last, in one write), under the target's keys: a step
that ran a side effect but was not checkpointed yet, or that asks about an unknown outcome,
then reads the same records on the copy and never repeats the effect.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from keel.journal import ToolJournal

__all__ = ["copy_thread"]


def _target_config(found: CheckpointTuple, target: str) -> RunnableConfig:
    """Where `aput` writes `found` under `target`: its namespace and its parent's id."""
    configurable: dict[str, Any] = {
        "thread_id": target,
        "checkpoint_ns": found.config["configurable"].get("checkpoint_ns", ""),
    }
    parent = (found.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    if parent:
        configurable["checkpoint_id"] = parent
    return {"configurable": configurable}


async def copy_thread(
    saver: BaseCheckpointSaver[Any],
    source: str,
    target: str,
    *,
    journal: ToolJournal | None = None,
) -> int:
    """Copy every checkpoint of thread `source` to thread `target`, and with `journal` the
    source's journal records; the number of checkpoints copied.

    `target` should have no checkpoints yet: the copy adds to whatever is there.
    """
    found = [t async for t in saver.alist({"configurable": {"thread_id": source}})]
    found.sort(key=lambda t: t.checkpoint["id"])
    for t in found:
        saved = await saver.aput(
            _target_config(t, target),
            t.checkpoint,
            t.metadata,
            dict(t.checkpoint["channel_versions"]),
        )
        writes: defaultdict[str, list[tuple[str, Any]]] = defaultdict(list)
        for task_id, channel, value in t.pending_writes or ():
            writes[task_id].append((channel, value))
        for task_id, task_writes in writes.items():
            await saver.aput_writes(saved, task_writes, task_id)
    if journal is not None:
        await journal.copy_thread(source, target)
    return len(found)

"""Retention: prune checkpoints by policy, and measure what a thread costs in storage.

Policy (`RetentionPolicy`): keep the last K checkpoints of every thread (older ones, their
pending writes and the blobs only they referenced are deleted), and drop whole threads —
checkpoints and journal rows — idle for longer than T. A thread with an unfinished run
keeps its latest checkpoint whatever K says (K ≥ 1), so pruning never breaks a resume.

Keel's graph has no subgraphs, but `messages`, `trace` and `context_summary` are
`DeltaChannel`s: a checkpoint stores only what its step wrote, and the whole value now and
then (a checkpoint written before they were delta channels holds the whole value too); the
value at a checkpoint is rebuilt from the nearest ancestor holding it plus the writes
since. So before its ancestors go, the oldest kept checkpoint of each branch is rewritten
with the whole value of each delta channel it lacks (rebuilt by the agent state's own
channels); a delta channel of another graph is kept rebuildable by keeping the ancestors it
needs instead. Dropping ancestors loses history (time travel further back), never the
current state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from keel.checkpoints.savers import Storage
from keel.errors import ErrorCode, UsageError

__all__ = [
    "PruneReport",
    "RetentionPolicy",
    "delete_checkpoints",
    "delete_run_checkpoints",
    "prune",
    "storage_bytes",
]


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep. Unset fields keep everything."""

    keep_last: int | None = None
    """Checkpoints kept per thread, newest first (at least 1)."""
    idle_s: float | None = None
    """Threads whose newest checkpoint is older than this many seconds are dropped."""

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise UsageError("keep_last must be at least 1", code=ErrorCode.CONFIG_INVALID)
        if self.idle_s is not None and self.idle_s < 0:
            raise UsageError("idle_s must not be negative", code=ErrorCode.CONFIG_INVALID)


@dataclass(frozen=True)
class PruneReport:
    threads_dropped: int
    checkpoints_deleted: int
    journal_rows_deleted: int


async def prune(storage: Storage, policy: RetentionPolicy, *, now: float) -> PruneReport:
    """Apply `policy` to every thread in `storage`; `now` is epoch seconds."""
    newest = await _newest_by_thread(storage)
    idle = []
    if policy.idle_s is not None:
        cutoff = now - policy.idle_s
        idle = [t for t, ts in newest.items() if ts < cutoff]
    dropped_checkpoints = 0
    for thread_id in idle:
        dropped_checkpoints += await _count(storage, thread_id)
        await storage.saver.adelete_thread(thread_id)
    journal_rows = await storage.journal.delete_threads(idle) if idle else 0
    deleted = dropped_checkpoints
    if policy.keep_last is not None:
        for thread_id in newest:
            if thread_id not in idle:
                deleted += await _keep_last(storage, thread_id, policy.keep_last)
    return PruneReport(len(idle), deleted, journal_rows)


async def _newest_by_thread(storage: Storage) -> dict[str, float]:
    """Each thread's newest checkpoint time (epoch seconds)."""
    newest: dict[str, float] = {}
    async for item in storage.saver.alist(None):
        thread_id = str(item.config["configurable"]["thread_id"])
        ts = datetime.fromisoformat(item.checkpoint["ts"]).replace(tzinfo=UTC).timestamp()
        if ts > newest.get(thread_id, float("-inf")):
            newest[thread_id] = ts
    return newest


async def _ids(storage: Storage, thread_id: str) -> list[str]:
    """The thread's root-namespace checkpoint ids, newest first."""
    config = RunnableConfig(configurable={"thread_id": thread_id, "checkpoint_ns": ""})
    return [
        str(item.config["configurable"]["checkpoint_id"])
        async for item in storage.saver.alist(config)
    ]


async def _count(storage: Storage, thread_id: str) -> int:
    return len(await _ids(storage, thread_id))


async def _keep_last(storage: Storage, thread_id: str, keep: int) -> int:
    config = RunnableConfig(configurable={"thread_id": thread_id, "checkpoint_ns": ""})
    found = [item async for item in storage.saver.alist(config)]  # newest first
    kept_ids = {_id(t) for t in found[:keep]}
    for i, t in enumerate(found[:keep]):
        if _parent(t) not in kept_ids:  # the oldest kept checkpoint of its branch
            found[i] = await _store_delta_values(storage.saver, t)
    needed = _delta_ancestors(found, found[:keep])
    doomed = [cid for t in found[keep:] if (cid := _id(t)) not in needed]
    await delete_checkpoints(storage, thread_id, doomed)
    return len(doomed)


def _id(item: CheckpointTuple) -> str:
    return str(item.config["configurable"]["checkpoint_id"])


def _parent(item: CheckpointTuple) -> str | None:
    parent = (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return str(parent) if parent else None


@functools.cache
def _agent_channels() -> dict[str, DeltaChannel[Any]]:
    """The agent state's delta channels (their reducers rebuild a value from writes)."""
    from langgraph.graph import StateGraph

    from keel.types import AgentState

    channels = StateGraph(AgentState).channels
    return {k: ch for k, ch in channels.items() if isinstance(ch, DeltaChannel)}


async def _store_delta_values(saver: Any, item: CheckpointTuple) -> CheckpointTuple:
    """`item` rewritten with the whole value of each agent delta channel it does not hold,
    so that it no longer needs its ancestors' writes."""
    checkpoint = item.checkpoint
    values = checkpoint["channel_values"]
    missing = [
        k for k in _agent_channels() if k in checkpoint["channel_versions"] and k not in values
    ]
    if not missing:
        return item
    history = await saver.aget_delta_channel_history(config=item.config, channels=missing)
    whole = dict(values)
    for k in missing:
        found = history.get(k) or {"writes": []}
        channel = _agent_channels()[k].from_checkpoint(found.get("seed"))
        channel.replay_writes(found["writes"])
        whole[k] = _DeltaSnapshot(channel.get())
    rewritten = cast(Checkpoint, {**checkpoint, "channel_values": whole})
    configurable = {k: v for k, v in item.config["configurable"].items() if k != "checkpoint_id"}
    if parent := _parent(item):
        configurable["checkpoint_id"] = parent
    versions = {k: checkpoint["channel_versions"][k] for k in missing}
    await saver.aput({"configurable": configurable}, rewritten, item.metadata, versions)
    return item._replace(checkpoint=rewritten)


def _delta_ancestors(found: list[CheckpointTuple], kept: list[CheckpointTuple]) -> set[str]:
    """Ancestors the kept checkpoints' delta channels are still rebuilt from: for each kept
    one, its parents back to the nearest one that holds each delta channel's whole value."""
    by_id = {_id(t): t for t in found}
    delta: set[str] = set()
    for t in found:  # LangGraph counts updates since the last snapshot of each delta channel
        delta.update((t.metadata or {}).get("counters_since_delta_snapshot") or {})
    needed: set[str] = set()
    for t in kept:
        values = t.checkpoint["channel_values"]
        missing = {k for k in delta if k in t.checkpoint["channel_versions"] and k not in values}
        node = t
        while missing and (parent := _parent(node)) in by_id:
            node = by_id[parent]
            needed.add(parent)
            missing -= set(node.checkpoint["channel_values"])
    return needed


async def delete_checkpoints(storage: Storage, thread_id: str, doomed: list[str]) -> None:
    """Delete these root-namespace checkpoints of a thread, their pending writes and the
    blobs only they referenced (LangGraph's savers have no API for it), in one transaction."""
    if not doomed:
        return
    if storage.backend == "postgres":
        from keel.checkpoints.postgres_saver import BatchedPostgresSaver

        keel = isinstance(storage.saver, BatchedPostgresSaver)
        await _delete_postgres(storage.pool, thread_id, doomed, bases=keel)
    elif storage.backend == "sqlite":
        await _delete_sqlite(storage.saver, thread_id, doomed)
    else:
        _delete_memory(storage.saver, thread_id, set(doomed))


async def delete_run_checkpoints(storage: Storage, thread_id: str, run_ids: list[str]) -> int:
    """Delete the root-namespace checkpoints runs `run_ids` wrote on a thread (found by the
    `run_id` LangGraph copies into each checkpoint's metadata); how many were deleted."""
    config = RunnableConfig(configurable={"thread_id": thread_id, "checkpoint_ns": ""})
    doomed = [
        str(item.config["configurable"]["checkpoint_id"])
        for run_id in run_ids
        async for item in storage.saver.alist(config, filter={"run_id": run_id})
    ]
    await delete_checkpoints(storage, thread_id, doomed)
    return len(doomed)


async def _delete_postgres(
    pool: Any, thread_id: str, doomed: list[str], *, bases: bool = False
) -> None:
    from keel.checkpoints.postgres_saver import UNUSED_BASES_SQL

    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = '' "
            "AND checkpoint_id = ANY(%s)",
            (thread_id, doomed),
        )
        await conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
            "AND checkpoint_id = ANY(%s)",
            (thread_id, doomed),
        )
        await conn.execute(
            "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = '' "
            "AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id "
            "AND c.checkpoint_ns = b.checkpoint_ns "
            "AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)",
            (thread_id,),
        )
        if bases:  # the bases only deleted checkpoints used
            await conn.execute(UNUSED_BASES_SQL, (thread_id,))


async def _delete_sqlite(saver: Any, thread_id: str, doomed: list[str]) -> None:
    from keel.checkpoints.sqlite_saver import UNUSED_BASES_SQL, KeelSqliteSaver

    marks = ",".join("?" * len(doomed))
    async with saver.lock:
        for table in ("writes", "checkpoints"):
            await saver.conn.execute(
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = '' "
                f"AND checkpoint_id IN ({marks})",
                (thread_id, *doomed),
            )
        if isinstance(saver, KeelSqliteSaver):  # the bases only deleted checkpoints used
            await saver.conn.execute(UNUSED_BASES_SQL, (thread_id,))
        await saver.conn.commit()


def _delete_memory(saver: Any, thread_id: str, doomed: set[str]) -> None:
    checkpoints = saver.storage.get(thread_id, {}).get("", {})
    for checkpoint_id in doomed:
        checkpoints.pop(checkpoint_id, None)
    for key in [k for k in saver.writes if k[0] == thread_id and k[2] in doomed]:
        del saver.writes[key]
    live: set[tuple[str, Any]] = set()
    for checkpoint, _meta, _parent in checkpoints.values():
        versions = saver.serde.loads_typed(checkpoint)["channel_versions"]
        live.update(versions.items())
    for key in [k for k in saver.blobs if k[0] == thread_id and k[1] == ""]:
        if (key[2], key[3]) not in live:
            del saver.blobs[key]


async def storage_bytes(storage: Storage, thread_id: str | None = None) -> int:
    """Bytes the checkpoints (and their writes, blobs and bases) take, for one thread or
    all: the stored values (checkpoint, metadata, writes, blobs), not keys or indexes."""
    if storage.backend == "postgres":
        from psycopg.rows import tuple_row

        from keel.checkpoints.postgres_saver import BatchedPostgresSaver

        where, params = ("WHERE thread_id = %s", (thread_id,)) if thread_id else ("", ())
        measured = [
            ("checkpoints", "octet_length(checkpoint::text || metadata::text)"),
            ("checkpoint_blobs", "octet_length(coalesce(blob, ''::bytea))"),
            ("checkpoint_writes", "octet_length(blob)"),
        ]
        if isinstance(storage.saver, BatchedPostgresSaver):  # a checkpoint and its base
            measured[0] = (
                "checkpoints",
                measured[0][1] + " + coalesce(octet_length(keel_checkpoint), 0)",
            )
            measured.append(("keel_checkpoint_bases", "octet_length(value)"))
        total = 0
        async with storage.pool.connection() as conn:
            for table, column in measured:
                async with conn.cursor(row_factory=tuple_row) as cur:
                    await cur.execute(
                        f"SELECT coalesce(sum({column}), 0) FROM {table} {where}", params
                    )
                    row = await cur.fetchone()
                total += int(row[0]) if row else 0
        return total
    if storage.backend == "sqlite":
        where, sparams = ("WHERE thread_id = ?", (thread_id,)) if thread_id else ("", ())
        total = 0
        from keel.checkpoints.sqlite_saver import KeelSqliteSaver

        tables = [
            ("checkpoints", "length(checkpoint) + length(metadata)"),
            ("writes", "length(value)"),
        ]
        if isinstance(storage.saver, KeelSqliteSaver):  # checkpoints are compressed against these
            await storage.saver.setup()
            tables.append(("keel_checkpoint_bases", "length(value)"))
        async with storage.saver.lock:  # type: ignore[attr-defined]
            for table, column in tables:
                cur = await storage.saver.conn.execute(  # type: ignore[attr-defined]
                    f"SELECT coalesce(sum({column}), 0) FROM {table} {where}", sparams
                )
                row = await cur.fetchone()
                total += int(row[0]) if row else 0
        return total
    raise UsageError(
        "storage_bytes measures SQLite or Postgres storage, not memory://",
        code=ErrorCode.CONFIG_INVALID,
    )

"""`AsyncPostgresSaver` with set-based writes: one statement per checkpoint, one per task.

The library saver sends a step's channel blobs and a task's writes as `executemany`: one
`INSERT` per row (a run of the agent graph is ~115 statements), serialises on a worker
thread, and takes one process-wide lock around every statement even on a pool. This
subclass keeps its tables, reads, migrations and semantics and changes only how
`aput` / `aput_writes` reach Postgres: the rows go as arrays through `unnest` in a single
statement (the blobs and the checkpoint row in one statement through a data-modifying
CTE), serialised inline, on a pooled connection without the lock. A run is ~20 statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from keel.checkpoints.compression import compressed
from keel.checkpoints.versions import CompactVersions

__all__ = ["BatchedPostgresSaver"]

PUT_CHECKPOINT_SQL = """
WITH blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %(thread_id)s, %(ns)s, b.channel, b.version, b.type, b.blob
      FROM unnest(%(channels)b::text[], %(versions)b::text[], %(types)b::text[],
                  %(blobs)b::bytea[]) AS b(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                         checkpoint, metadata)
VALUES (%(thread_id)s, %(ns)s, %(checkpoint_id)s, %(parent_id)s, %(checkpoint)s, %(metadata)s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

_PUT_WRITES_SQL = """
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path,
                               idx, channel, type, blob)
SELECT %(thread_id)s, %(ns)s, %(checkpoint_id)s, %(task_id)s, %(task_path)s,
       w.idx, w.channel, w.type, w.blob
  FROM unnest(%(idx)b::int[], %(channels)b::text[], %(types)b::text[], %(blobs)b::bytea[])
       AS w(idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""
INSERT_WRITES_SQL = _PUT_WRITES_SQL + "DO NOTHING"
UPSERT_WRITES_SQL = (
    _PUT_WRITES_SQL
    + "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
)


class BatchedPostgresSaver(CompactVersions, AsyncPostgresSaver):
    """The library's Postgres saver, writing a checkpoint or a task's writes in one statement,
    compact channel versions (`keel.checkpoints.versions`) and compressed blobs and writes
    (`keel.checkpoints.compression`)."""

    def __init__(
        self, conn: Any, pipe: Any = None, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(conn, pipe, compressed(serde))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint and its changed channel blobs in one statement."""
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        checkpoint_ns = configurable["checkpoint_ns"]
        inline, blob_values = _split_channel_values(checkpoint["channel_values"])
        channels: list[str] = []
        versions: list[str] = []
        types: list[str] = []
        blobs: list[bytes | None] = []
        for channel, version in new_versions.items():
            if channel not in blob_values:
                continue
            type_, blob = self.serde.dumps_typed(blob_values[channel])
            channels.append(channel)
            versions.append(cast(str, version))
            types.append(type_)
            blobs.append(blob)
        params = {
            "thread_id": thread_id,
            "ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
            "parent_id": configurable.get("checkpoint_id"),
            "checkpoint": Jsonb({**checkpoint, "channel_values": inline}, dumps=_json),
            "metadata": Jsonb(get_serializable_checkpoint_metadata(config, metadata), dumps=_json),
            "channels": channels,
            "versions": versions,
            "types": types,
            "blobs": blobs,
        }
        await self._execute(PUT_CHECKPOINT_SQL, params)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes in one statement (upserted when all are special channels,
        as the library does; the last write to a special channel wins)."""
        if not writes:
            return
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        rows: dict[int, tuple[str, str, bytes]] = {}
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            rows[WRITES_IDX_MAP.get(channel, idx)] = (channel, type_, blob)
        configurable = config["configurable"]
        params = {
            "thread_id": configurable["thread_id"],
            "ns": configurable["checkpoint_ns"],
            "checkpoint_id": configurable["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
            "idx": list(rows),
            "channels": [row[0] for row in rows.values()],
            "types": [row[1] for row in rows.values()],
            "blobs": [row[2] for row in rows.values()],
        }
        await self._execute(UPSERT_WRITES_SQL if upsert else INSERT_WRITES_SQL, params)

    async def _execute(self, sql: str, params: dict[str, Any]) -> None:
        if isinstance(self.conn, AsyncConnectionPool):  # no process-wide lock on a pool
            async with self.conn.connection() as conn, conn.cursor(binary=True) as cur:
                await cur.execute(sql, params)
            return
        # one shared connection (pipelined or not): the library's locked cursor
        async with self._cursor(pipeline=self.pipe is not None) as cur:
            await cur.execute(sql, params)


def _json(value: Any) -> bytes:
    """JSON for the checkpoint and metadata columns (orjson; non-str keys as strings, as
    the stdlib encoder writes them)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _split_channel_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Primitive channel values stay inline in the checkpoint row; the rest go to blobs
    (a delta snapshot leaves `True` behind as its marker), as the library stores them."""
    inline: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, _DeltaSnapshot):
            blobs[key] = value
            inline[key] = True
        elif value is None or isinstance(value, (str, int, float, bool)):
            inline[key] = value
        else:
            blobs[key] = value
    return inline, blobs

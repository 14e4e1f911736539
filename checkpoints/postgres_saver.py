"""`AsyncPostgresSaver` with set-based writes: one statement per checkpoint, one per task.

The library saver sends a step's channel blobs and a task's writes as `executemany`: one
`INSERT` per row (a run of the agent graph is ~115 statements), serialises on a worker
thread, and takes one process-wide lock around every statement even on a pool. This
subclass keeps its tables, reads, migrations and semantics and changes only how
`aput` / `aput_writes` reach Postgres: the rows go as arrays through `unnest` in a single
statement (the blobs and the checkpoint row in one statement through a data-modifying
CTE), serialised inline, on a pooled connection without the lock.

A task's ordinary writes are held and go with the next checkpoint's statement (one more
data-modifying CTE), so a step is one statement, not two: LangGraph saves the checkpoint
that follows a task right after it (in `sync` mode before the next step starts, and after
the writes of every delta channel). Writes to a special channel (an error, an interrupt, a
resume value, a scheduled task) are stored at once, with whatever is held for their
checkpoint, as is everything held when the thread is read, when its checkpoint does not
come within `HOLD_S`, and when the storage closes. A process killed between a task's end
and its step's checkpoint loses that task's writes, so the task runs again on resume (the
stock saver would have kept them, in a window of a few milliseconds): side effects are
not repeated, since the idempotency journal commits on its own. A run of the agent graph
is ~20 statements.

A task's ordinary writes are one row (`keel.checkpoints.packed_writes`); the reads that
return writes (`_load_writes`, the delta-channel history's second stage) unpack it.

A checkpoint is stored in two new columns of `checkpoints`, compressed against a base
(`keel.checkpoints.bases`): `keel_type` (`msgpack+zb:<id>`) and `keel_checkpoint`, every
channel value inside, one row a step. The `checkpoint` JSONB keeps what the library's SQL
reads: `v`, and for a delta channel's snapshot (its whole value, stored once every 100
updates) the stock layout (a `true` marker, a `checkpoint_blobs` row), which reads and the
delta-channel history find by version: the version of each delta channel whose snapshot is
stored at the version it has (every delta channel's, when this saver object did not write
the thread from its start and so does not know where its snapshots are). The metadata stays
JSONB (filters search it), but for LangGraph's `counters_since_delta_snapshot`, kept in the
compressed checkpoint (the JSONB keeps the key, empty). A row without `keel_checkpoint`
(written before) reads as the library reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.postgres.base import (
    _DELTA_PAGE_SIZE,
    _build_delta_stage1_sql,
    _build_delta_stage2_sql,
    _DeltaStage2Row,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import errors as pg_errors
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from keel.checkpoints.bases import BaseChooser
from keel.checkpoints.compression import MissingBaseError, compressed
from keel.checkpoints.packed_writes import (
    PACKED_CHANNEL,
    delta_target,
    pack_writes,
    unpack_pending_writes,
    unpack_rows,
)
from keel.checkpoints.versions import CompactVersions

__all__ = ["UNUSED_BASES_SQL", "BatchedPostgresSaver"]

log = logging.getLogger(__name__)

_COUNTERS = "counters_since_delta_snapshot"
_BODY_COUNTERS = "keel_delta_counters"
"""Where a checkpoint's `counters_since_delta_snapshot` metadata is kept, in its body."""

_SNAPSHOTS_KEPT = 2048
"""Threads whose delta snapshots' versions a saver remembers."""

HOLD_S = 0.5
"""How long a task's writes wait for the checkpoint that follows them before they are
stored on their own."""

_HELD_WRITES_CTE = """
writes AS (
    INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
                                   task_path, idx, channel, type, blob)
    SELECT %(thread_id)s, %(ns)s, %(writes_checkpoint_id)s, w.task_id, w.task_path, w.idx,
           w.channel, w.type, w.blob
      FROM unnest(%(w_task_ids)b::text[], %(w_task_paths)b::text[], %(w_idx)b::int[],
                  %(w_channels)b::text[], %(w_types)b::text[], %(w_blobs)b::bytea[])
           AS w(task_id, task_path, idx, channel, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
)"""

FLUSH_WRITES_SQL = "WITH" + _HELD_WRITES_CTE + " SELECT 1"

PUT_CHECKPOINT_SQL = (
    """
WITH"""
    + _HELD_WRITES_CTE
    + """,
bases AS (
    INSERT INTO keel_checkpoint_bases (thread_id, checkpoint_ns, base_id, type, value)
    SELECT %(thread_id)s, %(ns)s, %(base_id)s::text, %(base_type)s::text, %(base_value)s::bytea
     WHERE %(base_id)s::text IS NOT NULL
    ON CONFLICT (thread_id, checkpoint_ns, base_id) DO NOTHING
),
blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %(thread_id)s, %(ns)s, b.channel, b.version, b.type, b.blob
      FROM unnest(%(channels)b::text[], %(versions)b::text[], %(types)b::text[],
                  %(blobs)b::bytea[]) AS b(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                         checkpoint, metadata, keel_type, keel_checkpoint)
VALUES (%(thread_id)s, %(ns)s, %(checkpoint_id)s, %(parent_id)s, %(checkpoint)s, %(metadata)s,
        %(keel_type)s, %(keel_checkpoint)s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata,
              keel_type = EXCLUDED.keel_type, keel_checkpoint = EXCLUDED.keel_checkpoint
"""
)

SETUP_SQL = (
    """
CREATE TABLE IF NOT EXISTS keel_checkpoint_bases (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    base_id TEXT NOT NULL,
    type TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, base_id)
)""",
    "ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS keel_type TEXT",
    "ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS keel_checkpoint BYTEA",
)
"""Keel's additions to the library's tables (run by `setup` after its migrations)."""

UNUSED_BASES_SQL = """
DELETE FROM keel_checkpoint_bases b WHERE b.thread_id = %s AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
     WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
       AND split_part(c.keel_type, '+zb:', 2) = b.base_id
) AND NOT EXISTS (
    SELECT 1 FROM checkpoint_writes w
     WHERE w.thread_id = b.thread_id AND w.checkpoint_ns = b.checkpoint_ns
       AND split_part(w.type, '+zb:', 2) = b.base_id
)"""
"""Deletes a thread's bases no checkpoint or write uses any more (after checkpoints are
deleted)."""

_SELECT_SQL = AsyncPostgresSaver.SELECT_SQL.replace(
    "select\n    thread_id,", "select\n    thread_id,\n    keel_type,\n    keel_checkpoint,", 1
)
assert _SELECT_SQL != AsyncPostgresSaver.SELECT_SQL

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


_STAGE2_WRITES_SQL = """
SELECT checkpoint_id, task_id, task_path, channel, idx, type, blob FROM checkpoint_writes
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s) AND channel = ANY(%s)
"""


class BatchedPostgresSaver(CompactVersions, AsyncPostgresSaver):
    """The library's Postgres saver, writing a checkpoint or a task's writes in one statement,
    compact channel versions (`keel.checkpoints.versions`), compressed blobs and writes
    (`keel.checkpoints.compression`), and a task's ordinary writes in one row
    (`keel.checkpoints.packed_writes`)."""

    SELECT_SQL = _SELECT_SQL

    def __init__(
        self, conn: Any, pipe: Any = None, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(conn, pipe, compressed(serde))
        self._held: dict[_Key, _Held] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        self._bases = BaseChooser(self.serde)
        self._snapshots: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        """(thread, ns) -> (the last checkpoint written, each delta channel's snapshot
        version), for threads this saver object wrote from their first checkpoint."""

    async def setup(self) -> None:
        """The library's tables and migrations, then Keel's base table and columns (the
        columns only when missing: `ALTER TABLE` locks the table even when it changes
        nothing)."""
        await super().setup()
        async with self._cursor() as cur:
            await cur.execute(SETUP_SQL[0])
            await cur.execute(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_name ="
                " 'checkpoints' AND column_name IN ('keel_type', 'keel_checkpoint')"
                " AND table_schema = current_schema()"
            )
            row = await cur.fetchone()
            if not row or row["n"] < 2:
                for sql in SETUP_SQL[1:]:
                    # another process may add it meanwhile
                    with contextlib.suppress(pg_errors.DuplicateColumn):
                        await cur.execute(sql)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint, its changed channel blobs and the writes held for its parent
        in one statement."""
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        checkpoint_ns = configurable["checkpoint_ns"]
        parent_id = configurable.get("checkpoint_id")
        held = self._held.pop((thread_id, checkpoint_ns, parent_id or ""), _Held())
        values = checkpoint["channel_values"]
        snapshots = {k: v for k, v in values.items() if isinstance(v, _DeltaSnapshot)}
        # the delta channels: their versions stay in the JSONB, so that a read finds a
        # snapshot stored at the version a channel still has (as the library's does)
        delta = {*snapshots, *(metadata.get("counters_since_delta_snapshot") or {})}
        current = checkpoint["channel_versions"]
        known = self._snapshot_versions(thread_id, checkpoint_ns, parent_id, checkpoint["id"])
        if known is not None:  # a channel's version matters only where a snapshot is stored
            known.update({k: current[k] for k in snapshots if k in current})
            delta = {k for k in delta if k in snapshots or known.get(k) == current.get(k)}
        body: dict[str, Any] = {
            **checkpoint,
            "channel_values": {k: v for k, v in values.items() if k not in snapshots},
        }
        stored_metadata: dict[str, Any] = dict(
            get_serializable_checkpoint_metadata(config, metadata)
        )
        if counters := stored_metadata.get(_COUNTERS):
            # LangGraph's per-step counters: read back with the checkpoint, never searched
            # by; the key stays (empty), as the library's SQL looks for it
            body[_BODY_COUNTERS] = counters
            stored_metadata = {**stored_metadata, _COUNTERS: {}}
        encoded = self._bases.encode(
            thread_id,
            checkpoint_ns,
            parent_id,
            checkpoint["id"],
            body,
            starts_run=metadata.get("source") == "input",
        )
        stub: dict[str, Any] = {"v": checkpoint["v"]}
        if snapshots:
            stub["channel_values"] = dict.fromkeys(snapshots, True)
        if delta_versions := {k: v for k, v in current.items() if k in delta}:
            stub["channel_versions"] = delta_versions
        channels: list[str] = []
        versions: list[str] = []
        types: list[str] = []
        blobs: list[bytes | None] = []
        for channel, version in new_versions.items():
            if channel not in snapshots:
                continue
            type_, blob = self.serde.dumps_typed(snapshots[channel])
            channels.append(channel)
            versions.append(cast(str, version))
            types.append(type_)
            blobs.append(blob)
        base_id, base_type, base_value = encoded.new_base or (None, None, None)
        params = {
            "thread_id": thread_id,
            "ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
            "parent_id": parent_id,
            "checkpoint": Jsonb(stub, dumps=_json),
            "metadata": Jsonb(stored_metadata, dumps=_json),
            "keel_type": encoded.type,
            "keel_checkpoint": encoded.blob,
            "base_id": base_id,
            "base_type": base_type,
            "base_value": base_value,
            "channels": channels,
            "versions": versions,
            "types": types,
            "blobs": blobs,
            **held.params(parent_id or ""),
        }
        await self._execute(PUT_CHECKPOINT_SQL, params)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _snapshot_versions(
        self, thread_id: str, ns: str, parent_id: str | None, checkpoint_id: str
    ) -> dict[str, Any] | None:
        """The version at which each delta channel's last snapshot is stored on this
        branch, when this saver object wrote the whole branch (else None: unknown); from
        now on, the versions as of `checkpoint_id` (the caller adds its snapshots)."""
        previous = self._snapshots.pop((thread_id, ns), None)
        if parent_id is None:
            known: dict[str, Any] | None = {}
        elif previous is not None and previous[0] == parent_id:
            known = previous[1]
        else:
            known = None
        if known is not None:
            self._snapshots[(thread_id, ns)] = (checkpoint_id, known)
            while len(self._snapshots) > _SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
        return known

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Hold a task's ordinary writes for the next checkpoint's statement; store writes
        to a special channel at once, after what is held for the same checkpoint (upserted
        when all are special, as the library does: the last write to a special channel
        wins)."""
        if not writes:
            return
        configurable = config["configurable"]
        base_id = self._bases.base_for(configurable["thread_id"], configurable["checkpoint_ns"])
        rows = pack_writes(self.serde, writes, base_id)
        key = (
            configurable["thread_id"],
            configurable["checkpoint_ns"],
            configurable["checkpoint_id"],
        )
        if not any(channel in WRITES_IDX_MAP for channel, _ in writes):
            held = self._held.setdefault(key, _Held())
            held.add(task_id, task_path, rows)
            if held.timer is None:
                held.timer = asyncio.get_running_loop().call_later(HOLD_S, self._flush_soon, key)
            return
        await self._flush(key)
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
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

    async def _flush(self, key: _Key) -> None:
        """Store what is held for one checkpoint, now."""
        held = self._held.pop(key, None)
        if held is None:
            return
        params = {"thread_id": key[0], "ns": key[1], **held.params(key[2])}
        await self._execute(FLUSH_WRITES_SQL, params)

    def _flush_soon(self, key: _Key) -> None:
        if key not in self._held:
            return
        self._held[key].timer = None
        flush = asyncio.ensure_future(self._flush(key))
        self._flushes.add(flush)
        flush.add_done_callback(self._flushed)

    def _flushed(self, flush: asyncio.Task[None]) -> None:
        self._flushes.discard(flush)
        if not flush.cancelled() and (exc := flush.exception()) is not None:
            log.warning("held checkpoint writes were not stored: %s: %s", type(exc).__name__, exc)

    async def aflush(self, thread_id: str | None = None) -> None:
        """Store every held write (of one thread, or all); wait for timed flushes under way."""
        for key in [k for k in self._held if thread_id is None or k[0] == thread_id]:
            await self._flush(key)
        if thread_id is None and self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = config["configurable"]["thread_id"]
        if self._held:
            await self.aflush(thread_id)
        try:
            return await super().aget_tuple(config)
        except MissingBaseError:
            await self._load_bases(thread_id)
            return await super().aget_tuple(config)

    async def _load_bases(self, thread_id: str | None) -> None:
        """Load the bases of a thread (of every thread when None) not in memory yet."""
        where = "WHERE base_id <> ALL(%s)" + (" AND thread_id = %s" if thread_id else "")
        params: list[Any] = [self._bases.loaded()]
        if thread_id:
            params.append(thread_id)
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT base_id, type, value FROM keel_checkpoint_bases {where}", params
            )
            for row in await cur.fetchall():
                self._bases.add(row["base_id"], row["type"], row["value"])

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        """The library's tuple; a checkpoint stored whole in `keel_checkpoint` is read from
        there (the delta snapshots the library loaded from blobs put back in)."""
        found = await super()._load_checkpoint_tuple(value)
        if value.get("keel_checkpoint") is None:
            return found
        body = self.serde.loads_typed((value["keel_type"], value["keel_checkpoint"]))
        values = {**body["channel_values"], **found.checkpoint["channel_values"]}
        metadata = found.metadata
        if (counters := body.pop(_BODY_COUNTERS, None)) is not None:
            metadata = cast(CheckpointMetadata, {**(metadata or {}), _COUNTERS: counters})
        return found._replace(
            checkpoint=cast(Checkpoint, {**body, "channel_values": values}), metadata=metadata
        )

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        thread_id = config["configurable"]["thread_id"] if config else None
        if self._held:
            await self.aflush(thread_id)
        await self._load_bases(thread_id)
        async for found in super().alist(config, filter=filter, before=before, limit=limit):
            yield found

    async def _stage2(
        self,
        thread_id: str,
        checkpoint_ns: str,
        chain_by_ch: Mapping[str, list[str]],
        seed_ver_by_ch: Mapping[str, str | None],
    ) -> list[dict[str, Any]]:
        """Stage 2 of the delta history: the writes of every chain checkpoint to the
        channels or packed (unpacked, kept per channel), and the library's seed blobs."""
        channels = list(chain_by_ch)
        cids = sorted({cid for chain in chain_by_ch.values() for cid in chain})
        with_seed = [ch for ch in channels if seed_ver_by_ch.get(ch) is not None]
        rows: list[dict[str, Any]] = []
        async with self._cursor() as cur:
            if cids:
                await cur.execute(
                    _STAGE2_WRITES_SQL,
                    (thread_id, checkpoint_ns, cids, [*channels, PACKED_CHANNEL]),
                )
                found = await cur.fetchall()
                rows.extend(
                    {
                        "_kind": "w",
                        "checkpoint_id": cid,
                        "task_id": task_id,
                        "task_path": path,
                        "channel": ch,
                        "idx": idx,
                        "type": type_,
                        "blob": blob,
                    }
                    for cid, task_id, path, ch, idx, type_, blob in unpack_rows(
                        (tuple(r.values()) for r in found), channels, self.serde
                    )
                )
            if with_seed:
                sql = _build_delta_stage2_sql(channels_with_chain=[], channels_with_seed=with_seed)
                params: list[Any] = []
                for ch in with_seed:
                    params.extend([thread_id, checkpoint_ns, ch, seed_ver_by_ch[ch]])
                await cur.execute(sql, params)
                rows.extend(await cur.fetchall())
        return rows

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The library's delta history (its stage 1 walk, unchanged), with stage 2 reading
        packed writes beside plain ones (`_stage2`). Held writes are stored first; the
        thread's bases are loaded if a packed row needs one that is not."""
        thread_id = config["configurable"]["thread_id"]
        if self._held:
            await self.aflush(thread_id)
        try:
            return await self._delta_history(config=config, channels=channels)
        except MissingBaseError:
            await self._load_bases(thread_id)
            return await self._delta_history(config=config, channels=channels)

    async def _delta_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        if not channels:
            return {}
        channels = list(channels)
        thread_id = config["configurable"]["thread_id"]
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        checkpoint_id = await delta_target(self, config)
        if checkpoint_id is None:
            return {ch: {"writes": []} for ch in channels}

        stage1_sql = _build_delta_stage1_sql(channels, paged=True, include_cursor=True)
        parent_of: dict[str, str | None] = {}
        ver_by_i_by_cid: list[dict[str, str | None]] = [{} for _ in channels]
        hb_by_i_by_cid: list[dict[str, bool]] = [{} for _ in channels]
        inline_by_i_by_cid: list[dict[str, Any]] = [{} for _ in channels]
        chain_by_ch: dict[str, list[str]] = {ch: [] for ch in channels}
        seed_ver_by_ch: dict[str, str | None] = {ch: None for ch in channels}
        seed_inline_by_ch: dict[str, Any] = {}
        walk_cursor_by_ch: dict[str, str | None] = {}
        seeded: set[str] = set()
        cursor: str | None = checkpoint_id
        async with self._cursor() as cur:
            while True:
                stage1_params: list[Any] = []
                for ch in channels:
                    stage1_params.extend([ch, ch, ch, ch])
                stage1_params.extend([thread_id, checkpoint_ns, cursor, _DELTA_PAGE_SIZE])
                await cur.execute(stage1_sql, stage1_params)
                page = await cur.fetchall()
                if not page:
                    break
                oldest = self._ingest_stage1_page(
                    cast("list[Mapping[str, Any]]", page),
                    channels,
                    parent_of,
                    ver_by_i_by_cid,
                    hb_by_i_by_cid,
                    inline_by_i_by_cid,
                )
                self._try_advance_walks(
                    checkpoint_id,
                    channels,
                    parent_of,
                    ver_by_i_by_cid,
                    hb_by_i_by_cid,
                    inline_by_i_by_cid,
                    chain_by_ch,
                    seed_ver_by_ch,
                    seed_inline_by_ch,
                    walk_cursor_by_ch,
                    seeded,
                )
                if len(seeded) == len(channels) or len(page) < _DELTA_PAGE_SIZE:
                    break
                cursor = oldest
                stage1_sql = _build_delta_stage1_sql(channels, paged=True)

        stage2 = await self._stage2(thread_id, checkpoint_ns, chain_by_ch, seed_ver_by_ch)
        return self._build_delta_channels_writes_history(
            channels=channels,
            chain_by_ch=chain_by_ch,
            seed_ver_by_ch=seed_ver_by_ch,
            seed_inline_by_ch=seed_inline_by_ch,
            stage2_rows=cast("list[_DeltaStage2Row]", stage2),
        )

    def _load_writes(
        self, writes: list[tuple[bytes, bytes, bytes, bytes, bytes, bytes]] | None
    ) -> list[tuple[str, str, Any]]:
        """The library's pending writes, each packed row replaced by its writes."""
        return unpack_pending_writes(super()._load_writes(writes), self.serde)

    async def adelete_thread(self, thread_id: str) -> None:
        for key in [k for k in self._held if k[0] == thread_id]:
            held = self._held.pop(key)
            if held.timer is not None:
                held.timer.cancel()
        await super().adelete_thread(thread_id)
        async with self._cursor() as cur:
            await cur.execute(
                "DELETE FROM keel_checkpoint_bases WHERE thread_id = %s", (str(thread_id),)
            )
        self._bases.forget(str(thread_id))

    async def _execute(self, sql: str, params: dict[str, Any]) -> None:
        if isinstance(self.conn, AsyncConnectionPool):  # no process-wide lock on a pool
            async with self.conn.connection() as conn, conn.cursor(binary=True) as cur:
                await cur.execute(sql, params)
            return
        # one shared connection (pipelined or not): the library's locked cursor
        async with self._cursor(pipeline=self.pipe is not None) as cur:
            await cur.execute(sql, params)


_Key = tuple[str, str, str]
"""(thread_id, checkpoint_ns, checkpoint_id) of the checkpoint held writes belong to."""


@dataclass
class _Held:
    """Serialised writes of one checkpoint's tasks, waiting for the next checkpoint."""

    task_ids: list[str] = field(default_factory=list)
    task_paths: list[str] = field(default_factory=list)
    idx: list[int] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def add(self, task_id: str, task_path: str, rows: dict[int, tuple[str, str, bytes]]) -> None:
        for idx, (channel, type_, blob) in rows.items():
            self.task_ids.append(task_id)
            self.task_paths.append(task_path)
            self.idx.append(idx)
            self.channels.append(channel)
            self.types.append(type_)
            self.blobs.append(blob)

    def params(self, checkpoint_id: str) -> dict[str, Any]:
        if self.timer is not None:
            self.timer.cancel()
        return {
            "writes_checkpoint_id": checkpoint_id,
            "w_task_ids": self.task_ids,
            "w_task_paths": self.task_paths,
            "w_idx": self.idx,
            "w_channels": self.channels,
            "w_types": self.types,
            "w_blobs": self.blobs,
        }


def _json(value: Any) -> bytes:
    """JSON for the checkpoint and metadata columns (orjson; non-str keys as strings, as
    the stdlib encoder writes them)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)

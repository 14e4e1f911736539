"""`AsyncSqliteSaver` with compact channel versions (`keel.checkpoints.versions`), compressed
values (`keel.checkpoints.compression`), a task's ordinary writes in one row
(`keel.checkpoints.packed_writes`) and checkpoints compressed against a recent one.

SQLite keeps every channel value inside its checkpoint row, so versions need no random tag.

Each checkpoint is compressed against a base (`keel.checkpoints.bases`), kept in the table
`keel_checkpoint_bases`; the row's type names it (`msgpack+zb:<id>`), so the checkpoints
table keeps its columns and its one row per checkpoint. A checkpoint of the sales question
is ~0.3 KB instead of ~0.6 KB (bases included). Metadata is compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite._delta import (
    DELTA_STAGE1_SQL,
    build_delta_channels_writes_history,
    step_walk_with_row,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

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

__all__ = ["UNUSED_BASES_SQL", "KeelSqliteSaver"]

_CREATE_BASES = """
CREATE TABLE IF NOT EXISTS keel_checkpoint_bases (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    base_id TEXT NOT NULL,
    type TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, base_id)
)"""
UNUSED_BASES_SQL = """
DELETE FROM keel_checkpoint_bases WHERE thread_id = ? AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = keel_checkpoint_bases.thread_id
      AND c.checkpoint_ns = keel_checkpoint_bases.checkpoint_ns
      AND instr(c.type, '+zb:') > 0
      AND substr(c.type, instr(c.type, '+zb:') + 4) = keel_checkpoint_bases.base_id
) AND NOT EXISTS (
    SELECT 1 FROM writes w
    WHERE w.thread_id = keel_checkpoint_bases.thread_id
      AND w.checkpoint_ns = keel_checkpoint_bases.checkpoint_ns
      AND instr(w.type, '+zb:') > 0
      AND substr(w.type, instr(w.type, '+zb:') + 4) = keel_checkpoint_bases.base_id
)"""
"""Deletes a thread's bases no checkpoint or write uses any more (after checkpoints are
deleted)."""

T = TypeVar("T")

_INSERT_WRITES = (
    "INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel,"
    " type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class KeelSqliteSaver(CompactVersions, AsyncSqliteSaver):
    """The library's SQLite saver, writing compact versions, compressed values and packed
    writes."""

    tagged_versions = False

    def __init__(self, conn: Any, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(conn, serde=compressed(serde))
        self._bases_ready = False
        self._bases = BaseChooser(self.serde)

    async def setup(self) -> None:
        """The library's tables, and `keel_checkpoint_bases`."""
        await super().setup()
        if self._bases_ready:
            return
        async with self.lock:
            try:
                await self.conn.execute(_CREATE_BASES)
                await self.conn.commit()
            except aiosqlite.OperationalError as exc:  # a read-only file: reads still work
                if "readonly" not in str(exc):
                    raise
            self._bases_ready = True

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """The library's `aput`, the checkpoint compressed against a base (a new one, stored
        in the same transaction, when its parent's cannot serve), metadata as compact JSON."""
        await self.setup()
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = str(configurable["checkpoint_ns"])
        parent_id = configurable.get("checkpoint_id")
        encoded = self._bases.encode(
            thread_id,
            checkpoint_ns,
            parent_id,
            checkpoint["id"],
            checkpoint,
            starts_run=metadata.get("source") == "input",
        )
        serialized_metadata = json.dumps(
            get_checkpoint_metadata(config, metadata), ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8", "ignore")
        async with self.lock:
            if encoded.new_base is not None:
                await self.conn.execute(
                    "INSERT OR IGNORE INTO keel_checkpoint_bases (thread_id, checkpoint_ns,"
                    " base_id, type, value) VALUES (?, ?, ?, ?, ?)",
                    (thread_id, checkpoint_ns, *encoded.new_base),
                )
            await self.conn.execute(
                "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,"
                " parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    checkpoint_ns,
                    checkpoint["id"],
                    parent_id,
                    encoded.type,
                    encoded.blob,
                    serialized_metadata,
                ),
            )
            await self.conn.commit()
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def _load_bases(self, thread_id: str | None) -> None:
        """Load the bases of a thread (of every thread when None) not in memory yet."""
        await self.setup()
        where, params = ("WHERE thread_id = ?", (thread_id,)) if thread_id is not None else ("", ())
        loaded = set(self._bases.loaded())
        async with self.lock:
            async with self.conn.execute(
                f"SELECT base_id FROM keel_checkpoint_bases {where}", params
            ) as cur:
                missing = [row[0] for row in await cur.fetchall() if row[0] not in loaded]
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                async with self.conn.execute(
                    "SELECT base_id, type, value FROM keel_checkpoint_bases "
                    f"WHERE base_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ) as cur:
                    for base_id, type_, value in await cur.fetchall():
                        self._bases.add(base_id, type_, value)

    async def _with_bases(self, thread_id: str, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, again after loading the thread's bases if one was missing."""
        try:
            return await read()
        except MissingBaseError:
            await self._load_bases(thread_id)
            return await read()

    async def adelete_thread(self, thread_id: str) -> None:
        await super().adelete_thread(thread_id)
        await self.setup()
        async with self.lock:
            await self.conn.execute(
                "DELETE FROM keel_checkpoint_bases WHERE thread_id = ?", (str(thread_id),)
            )
            await self.conn.commit()
        self._bases.forget(str(thread_id))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """The library's `aput_writes` (replacing when every write is to a special channel,
        else keeping what is there), with a task's ordinary writes packed in one row."""
        if not writes:
            return
        verb = (
            "INSERT OR REPLACE "
            if all(w[0] in WRITES_IDX_MAP for w in writes)
            else "INSERT OR IGNORE "
        )
        configurable = config["configurable"]
        key = (
            str(configurable["thread_id"]),
            str(configurable["checkpoint_ns"]),
            str(configurable["checkpoint_id"]),
            task_id,
            task_path,
        )
        rows = [
            (*key, idx, channel, type_, blob)
            for idx, (channel, type_, blob) in pack_writes(
                self.serde, writes, self._bases.base_for(*key[:2])
            ).items()
        ]
        await self.setup()
        async with self.lock, self.conn.cursor() as cur:
            await cur.executemany(verb + _INSERT_WRITES, rows)
            await self.conn.commit()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = str(config["configurable"]["thread_id"])
        found = await self._with_bases(
            thread_id, lambda: super(KeelSqliteSaver, self).aget_tuple(config)
        )
        return _unpacked(found, self.serde) if found is not None else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        await self._load_bases(str(config["configurable"]["thread_id"]) if config else None)
        async for found in super().alist(config, filter=filter, before=before, limit=limit):
            yield _unpacked(found, self.serde)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        thread_id = str(config["configurable"]["thread_id"])
        return await self._with_bases(
            thread_id, lambda: self._delta_history(config=config, channels=channels)
        )

    async def _delta_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The library's delta history (its stage 1 walk, unchanged), with stage 2 reading
        packed rows beside plain ones: one query for the writes of every chain checkpoint to
        the channels or packed, unpacked and kept per channel by the library's builder."""
        if not channels:
            return {}
        channels = list(channels)
        await self.setup()
        thread_id = str(config["configurable"]["thread_id"])
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        checkpoint_id = await delta_target(self, config)
        if checkpoint_id is None:
            return {ch: {"writes": []} for ch in channels}

        chain_by_ch: dict[str, list[str]] = {ch: [] for ch in channels}
        seed_val_by_ch: dict[str, Any] = {}
        walk_state: dict[str, Any] = {}
        seeded: set[str] = set()
        rows: list[tuple[Any, ...]] = []
        async with self.lock, self.conn.cursor() as cur:
            await cur.execute(
                DELTA_STAGE1_SQL,
                (thread_id, checkpoint_ns, checkpoint_id, thread_id, checkpoint_ns),
            )
            async for cid, type_tag, blob in cur:
                if step_walk_with_row(
                    cid=cid,
                    type_tag=type_tag,
                    blob=blob,
                    target_id=checkpoint_id,
                    serde=self.serde,
                    chain_by_ch=chain_by_ch,
                    seed_val_by_ch=seed_val_by_ch,
                    walk_state=walk_state,
                    seeded=seeded,
                    channels=channels,
                ):
                    break
            cids = sorted({cid for chain in chain_by_ch.values() for cid in chain})
            if cids:
                wanted = [*channels, PACKED_CHANNEL]
                task_path = "task_path" if self._has_task_path else "''"
                await cur.execute(
                    f"SELECT checkpoint_id, task_id, {task_path}, channel, idx, type, value "
                    "FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                    f"AND checkpoint_id IN ({','.join('?' * len(cids))}) "
                    f"AND channel IN ({','.join('?' * len(wanted))})",
                    (thread_id, checkpoint_ns, *cids, *wanted),
                )
                rows = [tuple(row) for row in await cur.fetchall()]
        stage2 = [
            (cid, ch, task_id, idx, type_, blob, path)
            for cid, task_id, path, ch, idx, type_, blob in unpack_rows(rows, channels, self.serde)
        ]
        return build_delta_channels_writes_history(
            channels=channels,
            chain_by_ch=chain_by_ch,
            seed_val_by_ch=seed_val_by_ch,
            seeded=seeded,
            stage2_rows=cast("list[tuple[str, str, str, int, str, bytes, str]]", stage2),
            serde=self.serde,
        )


def _unpacked(found: CheckpointTuple, serde: SerializerProtocol) -> CheckpointTuple:
    if not found.pending_writes or not any(w[1] == PACKED_CHANNEL for w in found.pending_writes):
        return found
    return found._replace(pending_writes=unpack_pending_writes(found.pending_writes, serde))

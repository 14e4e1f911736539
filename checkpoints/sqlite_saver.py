"""`AsyncSqliteSaver` with compact channel versions (`keel.checkpoints.versions`), compressed
values (`keel.checkpoints.compression`) and a task's ordinary writes in one row
(`keel.checkpoints.packed_writes`).

SQLite keeps every channel value inside its checkpoint row, so versions need no random tag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite._delta import (
    DELTA_STAGE1_SQL,
    build_delta_channels_writes_history,
    step_walk_with_row,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from keel.checkpoints.compression import compressed
from keel.checkpoints.packed_writes import (
    PACKED_CHANNEL,
    pack_writes,
    unpack_pending_writes,
    unpack_rows,
)
from keel.checkpoints.versions import CompactVersions

__all__ = ["KeelSqliteSaver"]

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
            for idx, (channel, type_, blob) in pack_writes(self.serde, writes).items()
        ]
        await self.setup()
        async with self.lock, self.conn.cursor() as cur:
            await cur.executemany(verb + _INSERT_WRITES, rows)
            await self.conn.commit()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        found = await super().aget_tuple(config)
        return _unpacked(found, self.serde) if found is not None else None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for found in super().alist(config, filter=filter, before=before, limit=limit):
            yield _unpacked(found, self.serde)

    async def aget_delta_channel_history(
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
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            target = await self.aget_tuple(config)
            if target is None:
                return {ch: {"writes": []} for ch in channels}
            checkpoint_id = target.config["configurable"]["checkpoint_id"]

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

"""A task's ordinary writes in one stored row, unpacked on read.

LangGraph's savers store one row per write: a task that returns ten state keys is ten
`checkpoint_writes` (Postgres) or `writes` (SQLite) rows, each with its own key columns
(thread, checkpoint and task ids: ~100 bytes) and its own compressed value, too small to
compress well. Keel's nodes return ~5 keys a step, so writes were ~80 % of the rows a run
inserted.

Keel's savers store the ordinary writes of one `aput_writes` call (two or more, none to a
special channel) as one row: channel `__keel_writes__`, `idx` 0, and as its value the list
of each write's index, channel and serialised value (the type and bytes a row of its own
would hold, before compression), serialised and compressed together like any value
(`msgpack+z1`, or against the base of its checkpoint, `msgpack+zb:<id>`: a task's writes
repeat much of the state before it), so Keel's serializer reads it back as a list.
Writes to a special channel (`WRITES_IDX_MAP`: an error, an interrupt, a resume value, a
scheduled task) and to `__pregel_tasks` keep their own rows (SQL reads them by channel),
and so does a task's only write.

Every read path of Keel's savers unpacks: the pending writes of `aget_tuple` / `alist`
come back as the stock rows would give them (same order: a packed task has no other
ordinary row), and the delta-channel history reads packed rows beside plain ones. A row
written before (one write per row) reads as it always did. A stock saver cannot read a
packed row (it would see one write to an unknown channel), so a store Keel's savers wrote is
opened with them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    PendingWrite,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS

__all__ = [
    "PACKED_CHANNEL",
    "delta_target",
    "pack_writes",
    "packable",
    "unpack_pending_writes",
    "unpack_rows",
]

PACKED_CHANNEL = "__keel_writes__"
"""The channel column of a packed row (no graph has a channel of that name)."""


def packable(writes: Sequence[tuple[str, Any]]) -> bool:
    """Whether one `aput_writes` call's writes go in one row."""
    return len(writes) > 1 and not any(
        channel in WRITES_IDX_MAP or channel == TASKS for channel, _ in writes
    )


def pack_writes(
    serde: Any, writes: Sequence[tuple[str, Any]], base_id: str | None = None
) -> dict[int, tuple[str, str, bytes]]:
    """The rows one `aput_writes` call stores, by `idx`: (channel, type, blob) each. One
    packed row when `packable`, else a row per write as the library stores them. `serde` is
    Keel's compressing serializer (an `EncryptedSerializer`: its `.serde` serialises each
    value as a row of its own would, then the whole list is compressed once); with
    `base_id` (the base of the checkpoint the writes belong to, loaded), the packed row is
    compressed against that base (`keel.checkpoints.bases`)."""
    if not packable(writes):
        rows: dict[int, tuple[str, str, bytes]] = {}
        for idx, (channel, value) in enumerate(writes):
            type_, blob = serde.dumps_typed(value)
            rows[WRITES_IDX_MAP.get(channel, idx)] = (channel, type_, blob)
        return rows
    inner = serde.serde
    packed = [
        [idx, channel, *inner.dumps_typed(value)] for idx, (channel, value) in enumerate(writes)
    ]
    if base_id is None:
        return {0: (PACKED_CHANNEL, *serde.dumps_typed(packed))}
    type_, plain = inner.dumps_typed(packed)
    name, blob = serde.cipher.encrypt_against(plain, base_id)
    return {0: (PACKED_CHANNEL, f"{type_}+{name}", blob)}


def _unpacked(packed: Any, serde: SerializerProtocol) -> list[tuple[int, str, Any]]:
    return [(int(idx), str(ch), serde.loads_typed((t, b))) for idx, ch, t, b in packed]


def unpack_pending_writes(
    pending: Iterable[PendingWrite], serde: SerializerProtocol
) -> list[PendingWrite]:
    """Pending writes as LangGraph expects them: each packed row replaced by its writes,
    in place (their order is the order the stock rows sort in)."""
    found: list[PendingWrite] = []
    for task_id, channel, value in pending:
        if channel == PACKED_CHANNEL:
            found.extend((task_id, ch, v) for _, ch, v in _unpacked(value, serde))
        else:
            found.append((task_id, channel, value))
    return found


def unpack_rows(
    rows: Iterable[tuple[Any, ...]], channels: Collection[str], serde: SerializerProtocol
) -> list[tuple[Any, ...]]:
    """Write rows ending (channel, idx, type, blob), with each packed row replaced by a row
    per write it holds to one of `channels` (the leading columns as the packed row's), and
    plain rows to other channels dropped."""
    out: list[tuple[Any, ...]] = []
    for row in rows:
        *head, channel, _idx, type_, blob = row
        if channel != PACKED_CHANNEL:
            if channel in channels:
                out.append(row)
            continue
        for i, ch, t, b in serde.loads_typed((type_, blob)):
            if ch in channels:
                out.append((*head, ch, int(i), t, b))
    return out


async def delta_target(saver: BaseCheckpointSaver[Any], config: RunnableConfig) -> str | None:
    """The checkpoint a delta channel's history is read up to: the one `config` names, else
    the thread's latest (None: the thread has no checkpoint), as the library's savers do."""
    checkpoint_id = get_checkpoint_id(config)
    if checkpoint_id:
        return str(checkpoint_id)
    target = await saver.aget_tuple(config)
    return None if target is None else str(target.config["configurable"]["checkpoint_id"])

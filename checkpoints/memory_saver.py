"""`KeelMemorySaver`: the stock `InMemorySaver` with compact versions and packed writes.

The stock saver keeps each write as an entry of its own, its value serialised by a call of
its own: with Keel's nodes writing ~5 keys a step and a thousand runs alive, those entries
and calls were ~10 % of the objects that set off garbage collections (issue 19). Like
Keel's SQL savers (`keel.checkpoints.packed_writes`), this one keeps the ordinary writes of
one `put_writes` call (two or more, none to a special channel) as one entry: channel
`__keel_writes__`, index 0, and as its value the list of the writes' channels and values,
serialised together. Every read of the stock saver goes through `_ordered_writes`, which
hands it the entries the stock saver would have held, in the same order, each value
already read back (`_MemorySerde` passes such a value through). Nothing of it outlives the
process, so no stored format is at stake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from keel.checkpoints.packed_writes import PACKED_CHANNEL, packable
from keel.checkpoints.versions import CompactVersions

__all__ = ["KeelMemorySaver"]

_Entry = tuple[str, str, Any, str]
"""A stored write as the stock saver holds it: task id, channel, serialised value, path."""
_READ = "keel-read"
"""The type of a value `_ordered_writes` has read back already (from a packed entry)."""


class _MemorySerde(JsonPlusSerializer):
    """The stock serializer, passing through a value read back from a packed entry."""

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        if data[0] == _READ:
            return data[1]
        return super().loads_typed(data)


class KeelMemorySaver(CompactVersions, InMemorySaver):
    """`InMemorySaver` with compact versions (its blobs are keyed by version: tagged) and
    one entry per task's ordinary writes."""

    def __init__(self, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde or _MemorySerde())

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not packable(writes) or not isinstance(self.serde, _MemorySerde):
            super().put_writes(config, writes, task_id, task_path)
            return
        conf = config["configurable"]
        key = (conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"])
        stored = self.writes[key]
        if (task_id, 0) in stored:  # stored already (a retried save): as the stock saver
            return
        packed = self.serde.dumps_typed([[channel, value] for channel, value in writes])
        stored[(task_id, 0)] = cast(Any, (task_id, PACKED_CHANNEL, packed, task_path))

    def _ordered_writes(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str
    ) -> list[_Entry]:
        entries: list[_Entry] = super()._ordered_writes(thread_id, checkpoint_ns, checkpoint_id)
        if not any(entry[1] == PACKED_CHANNEL for entry in entries):
            return entries
        unpacked: list[_Entry] = []
        for task_id, channel, value, path in entries:
            if channel != PACKED_CHANNEL:
                unpacked.append((task_id, channel, value, path))
                continue
            for ch, read in self.serde.loads_typed(value):
                unpacked.append((task_id, ch, (_READ, read), path))
        return unpacked

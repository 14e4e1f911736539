"""The compiled agent graph, read and written as `AgentState` though it stores `AgentChannels`.

The graph keeps 16 of the state's keys in two channels (`run`, `control`: see
`keel.types.AgentChannels`), because LangGraph visits every channel at every step. Nothing
outside the graph should have to know: this compiled graph folds what goes in (a run's
input, a `Command`'s update, `update_state` values) and flattens what comes out (state
snapshots and their tasks' results, the history, and what a stream or `invoke` yields: the
`values` and `updates` chunks, and the state and writes inside the `checkpoints`, `tasks`
and `debug` ones: a task's input, its result (its writes by channel), a checkpoint's values
and its tasks' results).

A checkpoint written before the fold (one channel per key) is folded as LangGraph loads it
(`_migrate_checkpoint`, on every load path); pending writes to the old channels are folded
by Keel's savers (`keel.checkpoints.packed_writes.unpack_pending_writes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping, Sequence
from contextlib import aclosing, closing
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot, StateUpdate

from keel.checkpoints.versions import counter_of
from keel.types import CONTROL_KEYS, RUN_KEYS, flat, fold, folded_write

__all__ = ["FlatStateGraph", "fold_checkpoint"]

_VALUE_MODES = frozenset({"values", "updates"})
_FLATTENED_MODES = frozenset({*_VALUE_MODES, "checkpoints", "tasks", "debug"})
_CHANNELS = ("run", "control")


def fold_checkpoint(checkpoint: Checkpoint) -> None:
    """Fold, in place, a checkpoint that keeps the keys of `run` and `control` one channel
    each (written before they were folded): their values into the two channels, and each
    channel's version the newest of its keys'. A checkpoint without them is left as it is."""
    values = checkpoint["channel_values"]
    versions = checkpoint["channel_versions"]
    for channel, keys in (("run", RUN_KEYS), ("control", CONTROL_KEYS)):
        old = [k for k in keys if k in versions or k in values]
        if not old:
            continue
        moved = {k: values.pop(k) for k in old if k in values}
        if moved:
            values[channel] = {**(values.get(channel) or {}), **moved}
        stamps = [versions.pop(k) for k in old if k in versions]
        if channel in versions:
            stamps.append(versions[channel])
        if stamps:
            versions[channel] = max(stamps, key=counter_of)


def _folded_input(value: Any) -> Any:
    """A run's input or an update as the channels take it."""
    if isinstance(value, Mapping):
        return fold(value)
    if isinstance(value, Command) and value.update is not None:
        update = value.update
        if isinstance(update, Mapping):
            return dataclasses.replace(value, update=fold(update))
        if isinstance(update, Sequence) and not isinstance(update, str):
            pairs = [folded_write(*item) for item in update if isinstance(item, tuple)]
            if len(pairs) == len(update):
                return dataclasses.replace(value, update=pairs)
    return value


def _folded(value: Any) -> bool:
    return isinstance(value, dict) and ("run" in value or "control" in value)


def _flat_state(value: Any) -> Any:
    return flat(value) if _folded(value) else value


def _flat_writes(result: Any) -> Any:
    """A task's writes by channel (LangGraph's `map_task_result_writes`: a channel written
    more than once holds `{"$writes": [...]}`) with those to `run` and `control` spread back
    into their keys, a later write of a key over an earlier one, as the channels merge them."""
    if not _folded(result):
        return result
    out = {k: v for k, v in result.items() if k not in _CHANNELS}
    for channel in _CHANNELS:
        value = result.get(channel)
        many = isinstance(value, dict) and isinstance(value.get("$writes"), list)
        for write in value["$writes"] if many else [value]:
            if isinstance(write, dict):
                out.update(write)
    return out


def _flat_task(task: Any) -> Any:
    """A `tasks` item, a `debug` task or task result, or a checkpoint's task: its input
    (the state the node was given) and its result flattened."""
    if not isinstance(task, dict) or not (
        _folded(task.get("input")) or _folded(task.get("result"))
    ):
        return task
    out = dict(task)
    if "input" in out:
        out["input"] = _flat_state(out["input"])
    if "result" in out:
        out["result"] = _flat_writes(out["result"])
    return out


def _flat_checkpoint(payload: Any) -> Any:
    """A `checkpoints` item (or a `debug` checkpoint's payload): its values and its tasks'
    results flattened."""
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    out["values"] = _flat_state(payload.get("values"))
    if isinstance(payload.get("tasks"), list | tuple):
        out["tasks"] = [_flat_task(t) for t in payload["tasks"]]
    return out


def _flat_payload(mode: str, payload: Any) -> Any:
    """A chunk of `mode` with the state and writes in it flattened: a `values` chunk (the
    state), an `updates` chunk (node → update), a `checkpoints`, `tasks` or `debug` one;
    any other mode's payload as it is."""
    if mode not in _FLATTENED_MODES or not isinstance(payload, dict):
        return payload
    if mode == "values":
        return _flat_state(payload)
    if mode == "updates":
        return {
            node: flat(update) if isinstance(update, dict) else update
            for node, update in payload.items()
        }
    if mode == "checkpoints":
        return _flat_checkpoint(payload)
    if mode == "tasks":
        return _flat_task(payload)
    kind = payload.get("type")  # debug: {"step", "timestamp", "type", "payload"}
    inner = payload.get("payload")
    if kind == "checkpoint":
        return {**payload, "payload": _flat_checkpoint(inner)}
    if kind in ("task", "task_result"):
        return {**payload, "payload": _flat_task(inner)}
    return payload


class _Chunks:
    """How a stream call's chunks are shaped, and each one flattened accordingly."""

    def __init__(self, graph: CompiledStateGraph[Any, Any, Any, Any], kwargs: Mapping[str, Any]):
        mode = kwargs.get("stream_mode")
        mode = graph.stream_mode if mode is None else mode
        self.single = mode if isinstance(mode, str) else None
        self.modes = {mode} if isinstance(mode, str) else set(mode)
        self.subgraphs = bool(kwargs.get("subgraphs"))
        self.v2 = kwargs.get("version") == "v2"
        self.needed = not self.modes.isdisjoint(_FLATTENED_MODES)

    def flat(self, chunk: Any) -> Any:
        if not self.needed:
            return chunk
        if self.v2:
            if isinstance(chunk, dict) and chunk.get("type") in _FLATTENED_MODES:
                return {**chunk, "data": _flat_payload(chunk["type"], chunk.get("data"))}
            return chunk
        if self.single is not None:
            if self.subgraphs and isinstance(chunk, tuple) and len(chunk) == 2:
                return (chunk[0], _flat_payload(self.single, chunk[1]))
            return _flat_payload(self.single, chunk)
        if isinstance(chunk, tuple) and len(chunk) in (2, 3):
            *head, mode, payload = chunk
            return (*head, mode, _flat_payload(mode, payload))
        return chunk


def _flat_snapshot(snapshot: StateSnapshot) -> StateSnapshot:
    if _folded(snapshot.values):
        snapshot = snapshot._replace(values=flat(snapshot.values))
    if any(_folded(task.result) for task in snapshot.tasks):
        tasks = tuple(task._replace(result=_flat_writes(task.result)) for task in snapshot.tasks)
        snapshot = snapshot._replace(tasks=tasks)
    return snapshot


def _folded_updates(supersteps: Sequence[Sequence[StateUpdate]]) -> list[list[StateUpdate]]:
    return [
        [update._replace(values=_folded_input(update.values)) for update in step]
        for step in supersteps
    ]


class FlatStateGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled agent graph whose state reads and writes as `AgentState` (flat)."""

    def _migrate_checkpoint(self, checkpoint: Checkpoint) -> None:
        super()._migrate_checkpoint(checkpoint)
        fold_checkpoint(checkpoint)

    def get_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        return _flat_snapshot(super().get_state(config, subgraphs=subgraphs))

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> StateSnapshot:
        return _flat_snapshot(await super().aget_state(config, subgraphs=subgraphs))

    def get_state_history(self, *args: Any, **kwargs: Any) -> Iterator[StateSnapshot]:
        for snapshot in super().get_state_history(*args, **kwargs):
            yield _flat_snapshot(snapshot)

    async def aget_state_history(self, *args: Any, **kwargs: Any) -> AsyncIterator[StateSnapshot]:
        async for snapshot in super().aget_state_history(*args, **kwargs):
            yield _flat_snapshot(snapshot)

    def bulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        return super().bulk_update_state(config, _folded_updates(supersteps))

    async def abulk_update_state(
        self, config: RunnableConfig, supersteps: Sequence[Sequence[StateUpdate]]
    ) -> RunnableConfig:
        return await super().abulk_update_state(config, _folded_updates(supersteps))

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        chunks = _Chunks(self, kwargs)
        stream = cast(
            Generator[Any, None, None], super().stream(_folded_input(input), config, **kwargs)
        )
        with closing(stream) as inner:
            for chunk in inner:
                yield chunks.flat(chunk)

    def astream_channels(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """`astream` with the input folded but the chunks as the channels hold them, not
        passed through another async generator: for a reader of keys stored flat alone
        (the driver's observer reads `trace`, `usage` and `fatal_error`)."""
        return super().astream(_folded_input(input), config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        chunks = _Chunks(self, kwargs)
        stream = cast(
            AsyncGenerator[Any, None], super().astream(_folded_input(input), config, **kwargs)
        )
        async with aclosing(stream) as inner:
            async for chunk in inner:
                yield chunks.flat(chunk)

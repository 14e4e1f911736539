"""The one graph driver: every run segment (Python API, CLI, HTTP in-process, workers) goes
through `drive`, so a run meets the same storage-outage retry, observer (logs, metrics),
tracing and streaming however it was started.

```python
driven = await drive(agent, Segment(thread_id, graph_input, run_id=…, stream_modes=("updates",)),
                     on_chunk=send)
driven.result       # the RunResult of the thread's run
driven.snapshot     # the state it ended in (interrupts, next)
```
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from keel.checkpoints.outage import is_storage_outage
from keel.graphs.flat_state import FlatStateGraph
from keel.observability.observer import RunObserver, observe_run
from keel.types import RunResult

if TYPE_CHECKING:
    from keel.nodes import AgentContext
    from keel.runtime.agent import Agent

__all__ = [
    "OUTAGE_FIRST_DELAY_S",
    "RESULT_KEYS",
    "Driven",
    "OnChunk",
    "Segment",
    "drive",
    "stream_graph",
]

OUTAGE_FIRST_DELAY_S = 0.05
"""The first wait before retrying a segment after a storage outage (then x4, up to 5 s)."""
OUTAGE_MAX_DELAY_S = 5.0

Durability = Literal["sync", "async", "exit"]
OnChunk = Callable[[str, Any], Awaitable[None]]
"""Called with `(mode, chunk)` for every chunk of a mode the segment asked to stream."""


@dataclass(frozen=True)
class Segment:
    """One stretch of a thread's run: what to send the graph and what to stream back.

    `graph_input`: the new run's state, a `Command` (resume / update / goto), or None to
    continue from the checkpoint. `checkpoint_id` forks from that checkpoint instead of the
    thread's latest. `context`: the run dependencies (the agent's own when None).
    """

    thread_id: str
    graph_input: Any
    run_id: str | None = None
    tenant: str | None = None
    stream_modes: Sequence[str] = ()
    checkpoint_id: str | None = None
    durability: Durability | None = None
    interrupt_before: Sequence[str] | Literal["*"] | None = None
    interrupt_after: Sequence[str] | Literal["*"] | None = None
    context: AgentContext | None = None


@dataclass(frozen=True)
class Driven:
    """How a segment ended: the thread's state and the run's result."""

    snapshot: StateSnapshot
    result: RunResult


RESULT_KEYS = ("run_id", "tenant", "tier", "outcome", "trace", "usage", "fatal_error")
"""The state keys a run's result and its observer read: all a segment driven only for its
result (`drive(..., result_only=True)`) asks the graph to stream."""


async def drive(
    agent: Agent, segment: Segment, on_chunk: OnChunk | None = None, *, result_only: bool = False
) -> Driven:
    """Run the graph until it ends or interrupts, observed and traced.

    A storage outage (see `is_storage_outage`) costs a retry of the segment from the last
    checkpoint, with backoff, for as long as the run's own timeout (`run_timeout_s`) in
    total waiting; only a longer outage fails the run.

    `result_only` (no `on_chunk`): the caller reads the result, not the state, so the graph
    streams only `RESULT_KEYS` of its state at each step, not every key (the snapshot of a
    run that reached its outcome then holds those keys alone; any other is read back whole).
    """
    started = time.perf_counter()
    context = segment.context or agent.context
    config = _config(agent, segment)
    async with observe_run(
        run_id=segment.run_id,
        thread_id=segment.thread_id,
        tenant=segment.tenant,
        model=context.model_name,
        resumed=segment.graph_input is None,
    ) as observer:
        with agent.tracing.scope():
            # the outage retry is written out here rather than in a coroutine of its own:
            # every frame a run awaits through stays alive (and is scanned) for its length
            budget = agent.settings.limits.run_timeout_s
            delay, waited = OUTAGE_FIRST_DELAY_S, 0.0
            payload = segment.graph_input
            before: _Mark | None = None
            retrying = False
            while True:
                try:
                    if payload is None and config["configurable"].get("checkpoint_id"):
                        await _fork_with_own_deadline(agent, context, config)
                    if not retrying and _needs_mark(payload):
                        before = _mark(await agent.asnapshot(segment.thread_id))
                    elif (
                        retrying
                        and payload is not None
                        and await _taken_in(agent, segment.thread_id, payload, before)
                    ):
                        # the thread has the input (or answer) already: sending it again
                        # would repeat it, so continue from the last checkpoint instead
                        payload = None
                        config["configurable"].pop("checkpoint_id", None)
                    snapshot = await _stream(
                        agent, segment, config, payload, observer, on_chunk, result_only
                    )
                    break
                except Exception as exc:
                    if not is_storage_outage(exc) or waited >= budget:
                        raise
                    observer.log.warning(
                        "run.storage_retry",
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        wait_s=delay,
                    )
                    await context.sleep(delay)
                    waited += delay
                    delay = min(delay * 4, OUTAGE_MAX_DELAY_S)
                    retrying = True
        result = agent.result_of(snapshot, segment.thread_id, time.perf_counter() - started)
        observer.finish(result)
    return Driven(snapshot, result)


def _config(agent: Agent, segment: Segment) -> RunnableConfig:
    config = agent.config(segment.thread_id)
    if segment.run_id is not None:
        config["configurable"]["run_id"] = segment.run_id
    if segment.checkpoint_id:
        config["configurable"]["checkpoint_id"] = segment.checkpoint_id
    meta = {**config.get("metadata", {}), "run_id": segment.run_id, "tenant": segment.tenant}
    config["metadata"] = meta
    config["callbacks"] = agent.tracing.callbacks(meta)
    return config


async def _fork_with_own_deadline(
    agent: Agent, context: AgentContext, config: RunnableConfig
) -> None:
    """Running on from an earlier checkpoint is a fork: a new stretch of work with its own
    deadline (now + the run's `run_timeout_s`), however old the checkpoint. The fork is
    written as the thread's latest checkpoint, and the segment continues from it."""
    fork = RunnableConfig(configurable={"checkpoint_ns": "", **config["configurable"]})
    at = await agent.graph.aget_state(fork)
    values = at.values or {}
    if isinstance(values, Mapping) and "deadline" in values:
        limits = values.get("limits") or {}
        timeout = limits.get("run_timeout_s") or agent.settings.limits.run_timeout_s
        fresh = {"deadline": context.clock() + timeout, "iteration_deadline": None}
        await agent.graph.aupdate_state(fork, fresh)
        config["configurable"].pop("checkpoint_id", None)


_Mark = tuple[str | None, frozenset[str]]
"""A thread's latest checkpoint id and open interrupt ids: whether a command was taken in."""


def _mark(snapshot: StateSnapshot) -> _Mark:
    found = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
    return (str(found) if found else None, frozenset(i.id for i in snapshot.interrupts))


def _needs_mark(payload: Any) -> bool:
    """A new run's state names its run id, which the checkpoint shows once taken in; any
    other input (a command) is recognised by the thread moving on from where it was."""
    return payload is not None and not (isinstance(payload, Mapping) and payload.get("run_id"))


async def _taken_in(agent: Agent, thread_id: str, payload: Any, before: _Mark | None) -> bool:
    saved = await agent.asnapshot(thread_id)
    if isinstance(payload, Mapping) and payload.get("run_id"):
        return bool((saved.values or {}).get("run_id") == payload["run_id"])
    return before is not None and _mark(saved) != before


async def _stream(
    agent: Agent,
    segment: Segment,
    config: RunnableConfig,
    payload: Any,
    observer: RunObserver,
    on_chunk: OnChunk | None,
    result_only: bool = False,
) -> StateSnapshot:
    wanted = list(dict.fromkeys(segment.stream_modes))
    narrow = result_only and on_chunk is None  # nobody sees the chunks but the observer
    keys = {"output_keys": list(RESULT_KEYS)} if narrow else {}
    # the observer's feed, and the final state (read back only when the run stopped early)
    modes = list(dict.fromkeys([*wanted, "updates", "values"]))
    final: Mapping[str, Any] | None = None  # the latest values chunk, copied only at the end
    paused = bool(segment.interrupt_before or segment.interrupt_after)
    async for mode, chunk in stream_graph(
        agent.graph,
        payload,
        config,
        channels=narrow,
        context=segment.context or agent.context,
        stream_mode=modes,
        durability=segment.durability or agent.settings.durability,
        interrupt_before=segment.interrupt_before,
        interrupt_after=segment.interrupt_after,
        **keys,
    ):
        if mode == "updates" and isinstance(chunk, Mapping):
            observer.on_update(chunk)
            paused = paused or "__interrupt__" in chunk
        elif mode == "values" and isinstance(chunk, Mapping):
            final = chunk
        if on_chunk is not None and mode in wanted:
            await on_chunk(mode, chunk)
    if not paused and final is not None and final.get("outcome") is not None:
        # the run reached its outcome: nothing is left to do, no need to read it back
        return StateSnapshot(dict(final), (), config, None, None, None, (), ())
    return await agent.graph.aget_state(agent.config(segment.thread_id))


EVENTS = "events"
"""The stream mode of LangChain's v2 run events (`astream_events`), every chain, model and
tool start / stream / end inside the run, as the Agent Server streams them."""


def stream_graph(
    graph: Pregel,
    payload: Any,
    config: RunnableConfig,
    *,
    stream_mode: Sequence[str],
    channels: bool = False,
    **kwargs: Any,
) -> AsyncIterator[tuple[str, Any]]:
    """`graph.astream(payload, config, stream_mode=[…], **kwargs)`'s `(mode, chunk)` items,
    plus `("events", event)` for each of LangChain's v2 run events when `stream_mode` names
    `events`.

    With `events`, the graph runs under `astream_events`: the root graph's own
    `on_chain_stream` events carry the other modes' `(mode, chunk)` items and are given as
    those (the official server does the same); every other event is given whole. Events
    tagged `langsmith:hidden` are internal and skipped.

    Without `events` it is the graph's own stream, not passed through another async
    generator (one step fewer for every chunk, two or three a graph step). `channels`: an
    agent graph's chunks as its channels hold them (`FlatStateGraph.astream_channels`, not
    flattened), for a caller that reads only keys stored flat.
    """
    modes = [m for m in dict.fromkeys(stream_mode) if m != EVENTS]
    if EVENTS not in stream_mode:
        stream = graph.astream
        if channels and isinstance(graph, FlatStateGraph):
            stream = graph.astream_channels
        return cast(
            AsyncIterator[tuple[str, Any]],
            stream(payload, config, stream_mode=modes, **kwargs),  # type: ignore[arg-type]
        )
    return _with_events(graph, payload, config, modes, **kwargs)


async def _with_events(
    graph: Pregel, payload: Any, config: RunnableConfig, modes: list[str], **kwargs: Any
) -> AsyncIterator[tuple[str, Any]]:
    """`stream_graph` with `events`: the graph under `astream_events` (see there)."""
    root: str | None = None
    async for event in graph.astream_events(
        payload, config, version="v2", stream_mode=modes, **kwargs
    ):
        root = root or str(event["run_id"])  # the first event is the graph's own start
        if "langsmith:hidden" in (event.get("tags") or ()):
            continue
        item = event.get("data", {}).get("chunk")
        if (
            event["event"] == "on_chain_stream"
            and event["run_id"] == root
            and isinstance(item, tuple)
            and len(item) == 2
        ):
            yield item[0], item[1]
        else:
            yield EVENTS, event

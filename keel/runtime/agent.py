"""The bound agent (`AgentRuntime`): a definition's compiled graph with its checkpointer
and run dependencies.

```python
async with open_agent(settings=load_settings(model="scripted:sales")) as agent:
    result = await agent.arun("Which 3 products had the highest revenue last month?")
async with open_agent(my_agent) as agent:          # a keel.Agent definition
    ...
```
`keel.runtime.entry` has the synchronous `run()` / `resume()` for scripts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from keel.agents import Agent as AgentDefinition
from keel.cache import Caches
from keel.cache.runs import cached_run, run_cache_on, run_fingerprint
from keel.checkpoints import Storage, open_storage
from keel.checkpoints.adopt import adopt
from keel.config import Settings, load_settings
from keel.errors import ConfigError, ThreadNotFoundError, UsageError
from keel.graphs import build_agent_graph
from keel.graphs.start import run_start
from keel.journal import ToolJournal
from keel.nodes import AgentContext
from keel.observability.tracing import Tracing
from keel.resilience.isolation import set_tool_threads
from keel.runtime.context import Progress
from keel.runtime.driver import Driven, OnChunk, Segment, drive
from keel.runtime.durable import DurableAgentMixin, nothing_to_resume, pending_nodes, unfinished
from keel.tools.registry import ToolRegistry
from keel.types import AgentState, RunMetadata, RunResult, TraceStep

__all__ = ["Agent", "AgentRuntime", "default_agent", "open_agent", "refuse_unjournaled_effects"]

TRACE_FIELDS = (
    "iteration",
    "node",
    "thought",
    "action",
    "action_input",
    "observation",
    "ms",
    "tokens",
    "cost",
    "signal",
    "attempt",
    "error_code",
)


def _recursion_limit(settings: Settings) -> int:
    """Enough graph steps for every retry and repair the limits allow, and no more."""
    lim = settings.limits
    per_step = (lim.max_repairs + 1) * lim.max_model_attempts
    return (lim.max_iterations + 1) * (per_step + 2) + 10


@dataclass
class AgentRuntime(DurableAgentMixin):
    """An agent definition's compiled graph bound to its checkpointer and run dependencies
    (what `open_agent` yields).

    Durability methods (approve, history, fork, prune) come from `DurableAgentMixin`.
    """

    graph: CompiledStateGraph[Any, Any, Any, Any]
    context: AgentContext
    tracing: Tracing = field(default_factory=Tracing)
    """LangSmith tracing (off unless configured); `open_agent` closes it."""
    storage: Storage | None = None
    """The checkpoint store and journal (None for a caller's saver of a kind Keel does not
    know: `aprune` then refuses)."""
    definition: AgentDefinition | None = None
    """The definition it was opened from (`keel.Agent`)."""

    @property
    def settings(self) -> Settings:
        return self.context.settings

    def config(self, thread_id: str) -> RunnableConfig:
        return RunnableConfig(
            configurable={"thread_id": thread_id},
            recursion_limit=_recursion_limit(self.settings),
            metadata={"keel_model": self.context.model_name, "keel_mode": self.context.mode},
            tags=["keel"],
        )

    async def arun(
        self, question: str, *, thread_id: str | None = None, tenant: str = "default"
    ) -> RunResult:
        """Run one question to the end (or to an interrupt) and return its result."""
        question = question.strip()
        if not question:
            raise UsageError("the question is empty")
        if not tenant or len(tenant) > 128 or not tenant.isprintable():
            raise UsageError("tenant must be 1-128 printable characters")
        thread_id = thread_id or uuid.uuid4().hex
        # not kept in a local: this frame lives as long as the run, the snapshot need not
        if unfinished(await self.graph.aget_state(self.config(thread_id))):
            raise UsageError(
                f"thread {thread_id} has an unfinished run; continue it with "
                f"`keel resume --thread {thread_id}`"
            )
        state = self._initial_state(question, tenant)
        caches = self.context.caches
        if not run_cache_on(caches):
            return await self._invoke(state, thread_id, run_id=state["run_id"], tenant=tenant)
        fingerprint = run_fingerprint(
            self.context.tools.version,
            [b.spec for b in self.context.tiers.values()],
            self.context.system_prompt,
        )
        return await cached_run(
            caches,
            tenant,
            question,
            fingerprint,
            thread_id,
            lambda: self._invoke(state, thread_id, run_id=state["run_id"], tenant=tenant),
        )

    async def aresume(self, thread_id: str) -> RunResult:
        """Continue a stopped or crashed run from its last checkpoint."""
        config = self.config(thread_id)
        snapshot = await self.graph.aget_state(config)
        if not snapshot.values:
            raise nothing_to_resume(thread_id)
        if unfinished(snapshot):
            values = snapshot.values
            return await self._invoke(
                None, thread_id, run_id=values.get("run_id"), tenant=values.get("tenant")
            )
        return await self.result(thread_id)

    async def _invoke(
        self, graph_input: Any, thread_id: str, *, run_id: str | None, tenant: str | None
    ) -> RunResult:
        """Run the graph through the driver (outage retry, observer, tracing)."""
        segment = Segment(thread_id, graph_input, run_id=run_id, tenant=tenant)
        return (await drive(self, segment, result_only=True)).result

    async def drive(self, segment: Segment, on_chunk: OnChunk | None = None) -> Driven:
        """Run one segment of a thread's run, streaming the modes it asks for to `on_chunk`
        (see `keel.runtime.driver`): how the HTTP API and workers execute runs."""
        return await drive(self, segment, on_chunk)

    async def asnapshot(self, thread_id: str) -> StateSnapshot:
        """The thread's latest state (values, next, interrupts) as LangGraph reports it."""
        return await self.graph.aget_state(self.config(thread_id))

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints and its journal rows."""
        saver = self.graph.checkpointer
        if saver is not None and not isinstance(saver, bool):
            await saver.adelete_thread(thread_id)
        if self.context.journal is not None:
            await self.context.journal.delete_threads([thread_id])

    async def adelete_runs(self, thread_id: str, run_ids: list[str]) -> None:
        """Delete the checkpoints these runs wrote: the thread is back where it was before
        they started (a rollback). Their journal rows stay: the effects happened."""
        if self.storage is not None:
            from keel.checkpoints.retention import delete_run_checkpoints  # a run needs none

            await delete_run_checkpoints(self.storage, thread_id, run_ids)

    def start_state(
        self, question: str, *, tenant: str = "default", run_id: str | None = None
    ) -> AgentState:
        """The state a new run on a thread starts from (the HTTP API passes its run id)."""
        state = self._initial_state(question, tenant)
        if run_id is not None:
            state["run_id"] = run_id
        return state

    def _initial_state(self, question: str, tenant: str = "default") -> AgentState:
        start = run_start(self.context, question, tenant=tenant, run_id=uuid.uuid4().hex)
        return AgentState(messages=[HumanMessage(question)], **start)  # type: ignore[typeddict-item]

    async def result(self, thread_id: str, elapsed: float = 0.0) -> RunResult:
        """The result of the thread's latest run, as its checkpoint has it."""
        snapshot = await self.graph.aget_state(self.config(thread_id))
        return self.result_of(snapshot, thread_id, elapsed)

    def result_of(self, snapshot: StateSnapshot, thread_id: str, elapsed: float = 0.0) -> RunResult:
        """The result of the run a state snapshot of `thread_id` holds."""
        values: dict[str, Any] = dict(snapshot.values or {})
        if not values:
            raise ThreadNotFoundError(f"no checkpoint for thread '{thread_id}'")
        run_id = values.get("run_id")
        steps: list[TraceStep] = [s for s in values.get("trace", []) if s.get("run_id") == run_id]
        outcome = values.get("outcome")
        interrupted = unfinished(snapshot)
        if outcome is None:
            outcome = {
                "success": False,
                "output": "",
                "error_code": None,
                "error": "the run has not finished"
                + (f"; next: {', '.join(pending_nodes(snapshot))}" if interrupted else "")
                + (
                    f"; waiting for a human: keel approve --thread {thread_id}"
                    if snapshot.interrupts
                    else ""
                ),
            }
        metadata = RunMetadata(
            run_id=run_id,
            model=self.context.model_name,
            mode=self.context.mode,
            tenant=values.get("tenant", "default"),
            tier=values.get("tier"),
            iterations=len({s.get("iteration") for s in steps if s.get("node") == "reason"}),
            model_calls=RunMetadata.calls_in(steps),
            total_tokens=sum(int(s.get("tokens", 0)) for s in steps),
            total_cost=round(sum(float(s.get("cost", 0.0)) for s in steps), 8),
            execution_time=round(elapsed, 4),
            error_code=outcome.get("error_code"),
            trace=[{k: s.get(k) for k in TRACE_FIELDS} for s in steps],
            pending=[dict(i.value) for i in snapshot.interrupts if isinstance(i.value, dict)],
        )
        return RunResult(
            output=outcome.get("output", ""),
            success=bool(outcome.get("success")),
            error=outcome.get("error"),
            error_code=outcome.get("error_code"),
            thread_id=thread_id,
            metadata=metadata,
            status="interrupted" if interrupted else "finished",
            degraded=bool(outcome.get("degraded")),
        )


Agent = AgentRuntime
"""The old name of `AgentRuntime` (`keel.Agent` is now the definition)."""


def default_agent() -> AgentDefinition:
    """The built-in data assistant's definition (`keel.graphs.data_analyst`)."""
    from keel.graphs.data_analyst import agent

    return agent


@asynccontextmanager
async def open_agent(
    agent: AgentDefinition | Settings | None = None,
    *,
    settings: Settings | None = None,
    model: BaseChatModel | None = None,
    tools: ToolRegistry | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    progress: Progress | None = None,
    tier_models: Mapping[str, BaseChatModel] | None = None,
    caches: Caches | None = None,
    journal: ToolJournal | None = None,
) -> AsyncIterator[AgentRuntime]:
    """Open an agent definition (`keel.Agent`; the built-in data assistant when None) over
    settings (read from the environment when not given). A `Settings` passed first is taken
    as `settings=` (the old signature).

    `model`, `tools` and `tier_models` replace the definition's models and tools with objects
    you built (tests, custom chat models).

    `checkpointer`: a saver you opened, instead of `settings.checkpoint_url`. For
    `InMemorySaver`, `AsyncSqliteSaver` and `AsyncPostgresSaver` the idempotency journal goes
    in the saver's own database. Any other saver needs `journal` (a `ToolJournal`, ideally in
    the same database) when a tool has side effects (`idempotent=False`): without one,
    `ConfigError` is raised rather than run effects that a resume could repeat.
    `journal` also replaces the journal Keel would use otherwise.
    """
    if isinstance(agent, Settings):
        if settings is not None:
            raise UsageError("open_agent: settings given twice (positionally and settings=)")
        agent, settings = None, agent
    definition = agent if agent is not None else default_agent()
    if not isinstance(definition, AgentDefinition):
        raise UsageError(f"open_agent expects a keel.Agent definition, got {type(agent).__name__}")
    context = await definition.build_context(
        settings or load_settings(),
        model=model,
        tools=tools,
        progress=progress,
        tier_models=tier_models,
        caches=caches,
    )
    settings = context.settings
    if settings.tool_threads is not None:
        set_tool_threads(settings.tool_threads)
    tracing = Tracing.from_settings(settings)
    try:
        await tracing.start()
        if checkpointer is not None:
            adopted = await adopt(checkpointer)
            if adopted is None and journal is None:
                refuse_unjournaled_effects(context.tools, checkpointer)
            if adopted is not None and journal is not None:
                adopted = replace(adopted, journal=journal)
            context = replace(context, journal=adopted.journal if adopted else journal)
            graph = build_agent_graph().compile(checkpointer=checkpointer)
            yield AgentRuntime(graph, context, tracing, adopted, definition)
            return
        async with open_storage(settings.checkpoint_url, settings.checkpoint_pool) as storage:
            if journal is not None:
                storage = replace(storage, journal=journal)
            context = replace(context, journal=storage.journal)
            graph = build_agent_graph().compile(checkpointer=storage.saver)
            yield AgentRuntime(graph, context, tracing, storage, definition)
    finally:
        if context.caches is not None:
            await context.caches.aclose()
        await context.resilience.aclose()
        await asyncio.to_thread(tracing.close)


def refuse_unjournaled_effects(tools: ToolRegistry, saver: BaseCheckpointSaver[Any]) -> None:
    """Raise `ConfigError` when side-effecting tools would run without a journal."""
    effects = [t.name for t in tools if not t.idempotent]
    if effects:
        raise ConfigError(
            f"checkpointer {type(saver).__name__} has no idempotency journal, so a resumed "
            f"run could repeat the side effects of {', '.join(effects)}. Use InMemorySaver, "
            "AsyncSqliteSaver or AsyncPostgresSaver (the journal goes in their database), "
            "pass open_agent(journal=…) (a keel.journal.ToolJournal), or declare tools whose "
            "repetition is harmless with @tool(idempotent=True)"
        )

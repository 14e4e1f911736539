"""A Keel agent served through its `AgentRuntime`: all of Keel's machinery (driver, outage
retry, journal, approvals, budgets, role tool sets, tracing).

An assistant's (or a run's) `config["configurable"]` and `context` are one set of options
for `keel.Agent.with_config` (model, instructions, tools, limits, budget, approval); the
runtime of each distinct set is opened once, on the service's checkpointer and journal, and
kept while the service runs. What the definition cannot take is a 422 naming the field.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from keel.config import ServiceSettings
from keel.errors import UsageError
from keel.nodes import AgentContext
from keel.runtime.driver import OnChunk, Segment
from keel.server.auth import Principal, context_for_role
from keel.server.errors import Unprocessable
from keel.server.graph_info import draw, graph_schemas, graph_subgraphs
from keel.server.handles import question_from
from keel.server.served import Applied

__all__ = ["KEEL_CONFIG_KEYS", "KeelGraph", "keel_options"]

KEEL_CONFIG_KEYS = frozenset({"configurable"})
"""Top-level `config` keys a Keel agent takes: its options are under `configurable`
(`recursion_limit` follows from its limits; tags and metadata are the server's own)."""
SERVER_KEYS = frozenset(
    {
        "thread_id",
        "run_id",
        "checkpoint_id",
        "checkpoint_ns",
        "checkpoint_map",
        "assistant_id",
        "graph_id",
        "user_id",
    }
)
"""`configurable` keys the server sets itself for every run (never agent options)."""
MAX_CONFIGURED = 256
"""Distinct option sets one graph keeps a runtime for (assistants are few; past this, 422)."""

OpenRuntime = Callable[[Any], AbstractAsyncContextManager[Any]]
"""Opens the runtime of an agent definition on the service's checkpointer and journal."""


def keel_options(applied: Applied) -> dict[str, Any]:
    """The agent options in a run's applied config and context; 422 for a config key that
    does not apply to a Keel agent."""
    for key in applied.config:
        if key not in KEEL_CONFIG_KEYS:
            hint = (
                "a Keel agent's step limit follows from its limits: set "
                "context.limits.max_iterations"
                if key == "recursion_limit"
                else "a Keel agent takes its options in config.configurable or context"
            )
            raise Unprocessable(f"config.{key} cannot apply to a Keel agent: {hint}")
    configurable = applied.config.get("configurable") or {}
    if not isinstance(configurable, Mapping):
        raise Unprocessable("config.configurable must be an object")
    options = {k: v for k, v in configurable.items() if k not in SERVER_KEYS}
    options = {k: v for k, v in options.items() if not k.startswith("__")}
    return {**options, **applied.context}


@dataclass
class KeelGraph:
    """A Keel agent definition, served."""

    graph_id: str
    runtime: Any
    """The `AgentRuntime` of the definition as written (no assistant options)."""
    service: ServiceSettings
    definition: Any = None
    """The `keel.Agent` definition (None: options cannot apply, e.g. an old runtime)."""
    open_runtime: OpenRuntime | None = None
    description: str = ""
    kind: Literal["keel", "graph"] = "keel"
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _configured: dict[str, Any] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _contexts: dict[tuple[int, str], AgentContext] = field(default_factory=dict)

    # options ------------------------------------------------------------------------------

    def _definition_for(self, options: Mapping[str, Any]) -> Any:
        if not options:
            return self.definition
        first = next(iter(options))
        with_config = getattr(self.definition, "with_config", None)
        if with_config is None or self.open_runtime is None:
            raise Unprocessable(
                f"{first} cannot apply: graph {self.graph_id!r} takes no assistant options"
            )
        try:
            return with_config(options)
        except UsageError as exc:
            raise Unprocessable(str(exc)) from exc

    async def check(self, applied: Applied) -> None:
        self._definition_for(keel_options(applied))

    async def _runtime_for(self, applied: Applied) -> Any:
        options = keel_options(applied)
        if not options:
            return self.runtime
        key = json.dumps(options, sort_keys=True, default=str)
        async with self._lock:
            found = self._configured.get(key)
            if found is None:
                if len(self._configured) >= MAX_CONFIGURED:
                    raise Unprocessable(
                        f"graph {self.graph_id!r} already serves {MAX_CONFIGURED} option sets; "
                        "reuse an assistant's options"
                    )
                definition = self._definition_for(options)
                assert self.open_runtime is not None
                found = await self._stack.enter_async_context(self.open_runtime(definition))
                self._configured[key] = found
        return found

    async def bind(self, applied: Applied) -> KeelBound:
        return KeelBound(self, await self._runtime_for(applied), applied)

    def context_for(self, runtime: Any, principal: Principal) -> AgentContext:
        """The run context with only the tools the caller's role may use."""
        key = (id(runtime), principal.role)
        found = self._contexts.get(key)
        if found is None:
            found = context_for_role(runtime.context, self.service, principal.role)
            self._contexts[key] = found
        return found

    # thread state -------------------------------------------------------------------------

    def _config(self, thread_id: str, checkpoint: Mapping[str, Any] | None) -> RunnableConfig:
        config: RunnableConfig = self.runtime.config(thread_id)
        if checkpoint:
            config["configurable"].update(checkpoint)
        return config

    async def nodes(self) -> set[str]:
        return set(self.runtime.graph.nodes) - {"__start__"}

    async def snapshot(
        self, thread_id: str, checkpoint: Mapping[str, Any] | None = None
    ) -> StateSnapshot:
        found: StateSnapshot = await self.runtime.graph.aget_state(
            self._config(thread_id, checkpoint)
        )
        return found

    async def history(
        self,
        thread_id: str,
        *,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int,
    ) -> AsyncIterator[StateSnapshot]:
        async for snapshot in self.runtime.graph.aget_state_history(
            self.runtime.config(thread_id), filter=filter, before=before, limit=limit
        ):
            yield snapshot

    async def update_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None,
        checkpoint: Mapping[str, Any] | None,
    ) -> RunnableConfig:
        done: RunnableConfig = await self.runtime.graph.aupdate_state(
            self._config(thread_id, checkpoint), values, as_node=as_node
        )
        return done

    async def delete_thread(self, thread_id: str) -> None:
        await self.runtime.adelete_thread(thread_id)

    async def delete_runs(self, thread_id: str, run_ids: list[str]) -> None:
        await self.runtime.adelete_runs(thread_id, run_ids)

    # description ---------------------------------------------------------------------------

    async def drawable(self, xray: int | bool) -> dict[str, Any]:
        return await draw(self.runtime.graph, xray)

    async def schemas(self) -> dict[str, Any]:
        # a run's context (model, tools, clock, journal) is built by the server
        return graph_schemas(self.runtime.graph, self.graph_id, context=False)

    async def subgraphs(self, namespace: str | None, recurse: bool) -> dict[str, Any]:
        return graph_subgraphs(self.runtime.graph, self.graph_id, namespace, recurse)

    async def aclose(self) -> None:
        await self._stack.aclose()


@dataclass
class KeelBound:
    """A Keel agent with one run's options applied (its runtime opened)."""

    served: KeelGraph
    runtime: Any
    applied: Applied

    async def start_input(self, payload: dict[str, Any], *, tenant: str, run_id: str) -> Any:
        question = question_from(payload)
        return self.runtime.start_state(question, tenant=tenant, run_id=run_id)

    async def drive(
        self, segment: Segment, principal: Principal, on_chunk: OnChunk | None
    ) -> StateSnapshot:
        context = self.served.context_for(self.runtime, principal)
        driven = await self.runtime.drive(replace(segment, context=context), on_chunk)
        snapshot: StateSnapshot = driven.snapshot
        return snapshot

"""The Agent's durability API: human review, time travel, retention.

`Agent` (in `agent`) mixes this in; the storage-outage retry lives in `driver`. Everything
here works through LangGraph's own checkpoint API (`aget_state`, `aget_state_history`,
`aupdate_state`, `Command(resume=…)`), so what the CLI, a notebook and the HTTP API see is
exactly what is in the checkpoint.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot

from keel.errors import (
    ErrorCode,
    ThreadNotFoundError,
    ToolInputError,
    UsageError,
)
from keel.nodes import Decision

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from keel.checkpoints.retention import PruneReport, RetentionPolicy
    from keel.checkpoints.savers import Storage
    from keel.config import Settings
    from keel.nodes import AgentContext
    from keel.types import RunResult

__all__ = [
    "CheckpointInfo",
    "DurableAgentMixin",
    "nothing_to_resume",
    "pending_nodes",
    "unfinished",
]


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint in a thread's history (newest first)."""

    checkpoint_id: str
    step: int
    source: str
    next: tuple[str, ...]
    created_at: str | None
    parent_id: str | None
    messages: int
    last_message: str


class DurableAgentMixin:
    """Methods `Agent` gets for crash safety, human review, history and forks."""

    graph: CompiledStateGraph[Any, Any, Any, Any]
    context: AgentContext
    storage: Storage | None

    if TYPE_CHECKING:  # provided by Agent

        @property
        def settings(self) -> Settings: ...

        def config(self, thread_id: str) -> RunnableConfig: ...

        async def result(self, thread_id: str, elapsed: float = 0.0) -> RunResult: ...

        async def _invoke(
            self, graph_input: Any, thread_id: str, *, run_id: str | None, tenant: str | None
        ) -> RunResult: ...

    # ----------------------------------------------------------------- human review
    async def apending(self, thread_id: str) -> list[dict[str, Any]]:
        """The open review requests of a thread (empty when nothing waits for a human)."""
        snapshot = await self.graph.aget_state(self.config(thread_id))
        return [dict(i.value) for i in snapshot.interrupts if isinstance(i.value, dict)]

    async def aapprove(
        self,
        thread_id: str,
        *,
        edit: dict[str, Any] | None = None,
        reject: str | None = None,
    ) -> RunResult:
        """Answer the open review request and run on: approve (default), edit or reject."""
        if edit is not None and reject is not None:
            raise UsageError(
                "give either edited arguments or a rejection reason, not both",
                code=ErrorCode.REVIEW_INVALID,
            )
        pending = await self.apending(thread_id)
        if not pending:
            raise UsageError(
                f"thread {thread_id} has no call waiting for approval",
                code=ErrorCode.NO_PENDING_REVIEW,
            )
        request = pending[0]
        which = {
            "kind": request.get("kind"),
            "tool_call_id": request.get("tool_call_id"),
            "attempt": request.get("attempt"),
        }
        if edit is not None:
            tool = self.context.tools.get(request["tool"])
            if tool is None:
                raise UsageError(f"unknown tool '{request['tool']}'", code=ErrorCode.UNKNOWN_TOOL)
            try:
                tool.validate(edit)  # a bad edit fails here and changes nothing
            except ToolInputError as exc:
                raise UsageError(exc.message, code=ErrorCode.INVALID_TOOL_ARGS) from exc
            decision = Decision(action="edit", arguments=edit, **which)
        elif reject is not None:
            decision = Decision(
                action="reject", reason=reject.strip() or "no reason given", **which
            )
        else:
            decision = Decision(action="approve", **which)
        return await self._continue(thread_id, Command(resume=decision.model_dump()))

    async def _continue(self, thread_id: str, graph_input: Any) -> RunResult:
        values = await self.astate(thread_id)
        return await self._invoke(
            graph_input, thread_id, run_id=values.get("run_id"), tenant=values.get("tenant")
        )

    # ----------------------------------------------------------------- time travel
    async def ahistory(self, thread_id: str, *, limit: int | None = None) -> list[CheckpointInfo]:
        """The thread's checkpoints, newest first."""
        found = []
        async for snap in self.graph.aget_state_history(self.config(thread_id), limit=limit):
            values = snap.values or {}
            messages = values.get("messages", []) if isinstance(values, dict) else []
            last = messages[-1] if messages else None
            meta = dict(snap.metadata or {})
            parent = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            found.append(
                CheckpointInfo(
                    checkpoint_id=str(snap.config["configurable"]["checkpoint_id"]),
                    step=step if isinstance(step := meta.get("step"), int) else -1,
                    source=str(meta.get("source", "")),
                    next=tuple(snap.next),
                    created_at=snap.created_at,
                    parent_id=str(parent) if parent else None,
                    messages=len(messages),
                    last_message=_describe(last),
                )
            )
        if not found:
            raise ThreadNotFoundError(f"no checkpoint for thread '{thread_id}'")
        return found

    async def astate(self, thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        """The state values at a checkpoint (the latest when `checkpoint_id` is None)."""
        snapshot = await self.graph.aget_state(self._at(thread_id, checkpoint_id))
        if not snapshot.values:
            raise ThreadNotFoundError(
                f"no checkpoint '{checkpoint_id or 'latest'}' in thread '{thread_id}'"
            )
        return dict(snapshot.values)

    async def afork(
        self,
        thread_id: str,
        checkpoint_id: str,
        *,
        values: dict[str, Any] | None = None,
        as_node: str | None = None,
        run: bool = True,
    ) -> RunResult:
        """Branch the thread at a checkpoint, optionally with edited state, and run on.

        `values` go through the state's reducers, as a node's update would (`messages` are
        added or replaced by id). The fork becomes the thread's latest checkpoint. A fork is
        a new stretch of work with its own deadline (now + the run's `run_timeout_s`), however
        old the checkpoint; `values` may set `deadline` themselves.
        """
        old = await self.astate(thread_id, checkpoint_id)  # fails clearly when unknown
        if as_node is not None and as_node not in self.graph.nodes:
            raise UsageError(
                f"unknown node '{as_node}'; nodes: {', '.join(self.graph.nodes)}",
                code=ErrorCode.CONFIG_INVALID,
            )
        timeout = (old.get("limits") or {}).get("run_timeout_s")
        fresh: dict[str, Any] = {}
        if "deadline" in old:
            run_timeout = timeout or self.settings.limits.run_timeout_s
            fresh = {"deadline": self.context.clock() + run_timeout, "iteration_deadline": None}
        await self.graph.aupdate_state(
            self._at(thread_id, checkpoint_id), {**fresh, **(values or {})}, as_node=as_node
        )
        if run and unfinished(await self.graph.aget_state(self.config(thread_id))):
            return await self._continue(thread_id, None)
        return await self.result(thread_id)

    def _at(self, thread_id: str, checkpoint_id: str | None) -> RunnableConfig:
        config = self.config(thread_id)
        if checkpoint_id:
            config["configurable"] = {
                **config["configurable"],
                "checkpoint_ns": "",
                "checkpoint_id": checkpoint_id,
            }
        return config

    # ----------------------------------------------------------------- retention
    async def aprune(self, policy: RetentionPolicy) -> PruneReport:
        """Apply a retention policy to this agent's checkpoint store."""
        if self.storage is None:
            raise UsageError(
                "this agent was given a checkpointer of a kind Keel does not know; prune its store "
                "directly",
                code=ErrorCode.CONFIG_INVALID,
            )
        from keel.checkpoints.retention import prune  # loaded by the first prune, not a run

        return await prune(self.storage, policy, now=self.context.clock())


def nothing_to_resume(thread_id: str) -> ThreadNotFoundError:
    """The error for resuming a thread without a checkpoint, saying what to do instead."""
    return ThreadNotFoundError(
        f"no checkpoint for thread '{thread_id}', so there is nothing to resume: the id is "
        "wrong (or KEEL_CHECKPOINT_URL names another store), or the run stopped before it "
        "saved its first checkpoint. Nothing was changed. To ask again on this thread: "
        f'keel run --thread {shlex.quote(thread_id)} "QUESTION" '
        f"(Python: await agent.arun(question, thread_id={thread_id!r}))"
    )


def unfinished(snapshot: StateSnapshot) -> bool:
    """True while the thread's run has work left, including a step whose task results were
    saved before a crash but whose checkpoint was not (LangGraph then shows no `next`)."""
    return bool(snapshot.next or snapshot.tasks)


def pending_nodes(snapshot: StateSnapshot) -> list[str]:
    return list(snapshot.next) or [t.name for t in snapshot.tasks]


def _describe(message: Any) -> str:
    if message is None:
        return ""
    kind = type(message).__name__.removesuffix("Message").lower()
    calls = getattr(message, "tool_calls", None)
    if calls:
        return f"{kind}: calls " + ", ".join(c["name"] for c in calls)
    text = message.content if isinstance(message.content, str) else str(message.content)
    return f"{kind}: {text[:120]}"

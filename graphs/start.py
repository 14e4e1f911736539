"""How a run starts: the state keys a new run needs, from its run context.

A run started by Keel's runtime (`AgentRuntime.arun`, the HTTP API) comes with them; a run
started the LangGraph way (`graph.ainvoke({"messages": [...]})`, or as a subgraph of the
caller's own graph) does not, so `reason` fills them in on the run's first step (inside the
node: no extra node name that older checkpoints would not know).

`policy` records which tools the run may call and which need a human's approval, so a
resume, approve or fork from a process configured differently keeps the run's own policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from keel.errors import UsageError
from keel.nodes import AgentContext, text_of
from keel.types import AgentState, RunBudget, RunPolicy

__all__ = ["policy_of", "run_start", "start_update"]


def policy_of(ctx: AgentContext) -> RunPolicy:
    """The tool policy of a run started with this context."""
    return RunPolicy(
        tools=ctx.tools.names(),
        approval=[t.name for t in ctx.tools if t.requires_approval],
    )


def run_start(
    ctx: AgentContext, question: str, *, tenant: str = "default", run_id: str | None = None
) -> dict[str, Any]:
    """The run-level keys of a new run (everything but `messages`)."""
    limits = ctx.settings.limits
    cost = ctx.settings.cost
    return {
        "question": question,
        "tenant": tenant,
        "tier": None,
        "budget": RunBudget(
            usd=cost.run_usd, tokens=cost.run_tokens, model_calls=cost.run_model_calls
        ),
        "context_summary": None,
        "summary_upto": 0,
        "run_id": run_id or uuid.uuid4().hex,
        "model_spec": ctx.model_name,
        "limits": limits.model_dump(),
        "policy": policy_of(ctx),
        "deadline": ctx.clock() + limits.run_timeout_s,
        "iteration": 0,
        "iteration_deadline": None,
        "model_attempt": 0,
        "repair_attempt": 0,
        "repair_hint": None,
        "rejected_output": None,
        "fatal_error": None,
        "answer": None,
        "outcome": None,
    }


def start_update(state: Mapping[str, Any], ctx: AgentContext) -> dict[str, Any]:
    """What `reason` adds on a run's first step when the run was started without Keel's
    runtime: {} for a run already under way (or started by the runtime)."""
    started = state.get("run_id") and "limits" in state and "deadline" in state
    if started and state.get("outcome") is None:
        return {}
    messages: list[BaseMessage] = list(state.get("messages") or [])
    last = messages[-1] if messages else None
    if isinstance(last, HumanMessage):
        question = text_of(last.content).strip()
        new_messages: list[BaseMessage] = []
    else:
        question = str(state.get("question") or "").strip()
        new_messages = [HumanMessage(question)] if question else []
    if not question:
        raise UsageError(
            "the agent needs a question: invoke it with {'messages': [HumanMessage(...)]} or "
            "{'question': '...'}"
        )
    update = run_start(ctx, question, tenant=str(state.get("tenant") or "default"))
    if new_messages:
        update["messages"] = new_messages
    return update


def with_start(state: AgentState, update: Mapping[str, Any]) -> AgentState:
    """The state a node sees once the start keys are in (messages appended)."""
    view: dict[str, Any] = {**state, **update}
    if "messages" in update:
        view["messages"] = [*(state.get("messages") or []), *update["messages"]]
    return view  # type: ignore[return-value]

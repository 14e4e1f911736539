"""`act`: run the tool calls of the last model reply and record their observations.

When the results leave nothing to decide, `act` also closes the cycle (`signal=continue`,
see `observe.goes_on`) and the graph goes straight back to `reason`; otherwise `observe`
decides (retry, degrade).

What the model got wrong (unknown tool, invalid arguments, a refused query, a timeout) and
what the tool itself reported (any exception it raised that is not a bug, e.g.
`ValueError("city not found")`) become error observations the model can react to, perhaps
with another tool. A failure the model cannot fix (the tool's backend is gone, a bug in the
tool) is recorded as `fatal_error`; `observe` degrades. So is a loop that cannot get
anywhere: every call of the step repeats one that already failed (`keel.nodes._stuck`).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, cast

from langchain_core.messages import ToolCall, ToolMessage
from langgraph.checkpoint.base.id import UUID as CheckpointId
from langgraph.config import get_config
from langgraph.runtime import Runtime

from keel.errors import ErrorCode, ToolInputError, is_control_flow
from keel.nodes._cost_gate import cached_tool_call
from keel.nodes._durable import Plan, plan_calls, settle_all
from keel.nodes._records import changes, error_record, trace_step
from keel.nodes._resilience import calls_to_run, run_tool_guarded, tool_retry_update
from keel.nodes._stuck import repeats_failed_calls
from keel.nodes.context import AgentContext
from keel.nodes.observe import goes_on
from keel.observability.redact import redact
from keel.resilience import classify_tool_error
from keel.tools.registry import ToolContext
from keel.types import AgentState, ErrorRecord

NODE = "act"
OBSERVATION_LIMIT = 20_000
"""Characters of one tool result kept in the history."""


async def act(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = _under_policy(state, runtime.context)
    calls = await calls_to_run(state, ctx)  # on a tool retry: the failed ones
    policy = state.get("policy")
    plan = await plan_calls(  # approvals and unknown outcomes first; may interrupt()
        calls,
        tools=ctx.tools,
        journal=ctx.journal,
        thread_id=_thread_id(),
        run_id=state.get("run_id"),
        approval=policy["approval"] if policy else (),
    )
    moved = _deadlines_after_wait(state, ctx, runtime) if plan.answered else {}
    saved, state = state, cast(AgentState, {**state, **moved})
    outcomes = await settle_all(  # a crash or interrupt in one call waits for the others
        [_run_call(state, ctx, c, plan) for c in plan.calls]
    )
    messages = [o[0] for o in outcomes]
    errors = [o[1] for o in outcomes if o[1] is not None]
    fatal = next(
        (e for e in errors if e["kind"] != "retryable" and e["code"] not in _MODEL_FIXABLE), None
    )
    repeated = repeats_failed_calls(
        state, plan.calls, [o[1]["code"] if o[1] else None for o in outcomes]
    )
    if fatal is None and repeated is not None:  # the loop is stuck: degrade now
        why = f"the model repeated a call that had already failed the same way: {repeated}"
        fatal = error_record(state, NODE, ErrorCode.ITERATION_LIMIT, "degradable", why)
        errors.append(fatal)
    update: dict[str, Any] = {
        **moved,
        "messages": messages,
        "errors": errors,
        "trace": [o[2] for o in outcomes],
    }
    update.update(tool_retry_update(state, ctx, plan.calls, outcomes))
    if fatal is not None:
        update["fatal_error"] = fatal
    view = cast(AgentState, {**state, **{k: v for k, v in update.items() if k not in _LISTS}})
    closed = goes_on(view, ctx)  # nothing for `observe` to decide: the cycle ends here
    if closed is not None:
        update.update(closed)
        rows = update["trace"]
        if rows:  # the step's last row shows the decision, as observe's row did
            rows[-1] = {**rows[-1], "signal": "continue"}
    else:  # a retry is scheduled (`signal=retry`), or `observe` degrades the run
        update.setdefault("signal", "degrade")
    return changes(saved, update)


_LISTS = frozenset({"messages", "errors", "trace"})
"""Appended keys: `goes_on` reads none of them."""


_MODEL_FIXABLE = {
    str(ErrorCode.UNKNOWN_TOOL),
    str(ErrorCode.INVALID_TOOL_ARGS),
    str(ErrorCode.TOOL_REFUSED),
    str(ErrorCode.TOOL_REJECTED),
    str(ErrorCode.TOOL_ERROR),
}


def _under_policy(state: AgentState, ctx: AgentContext) -> AgentContext:
    """The context with only the tools the run's recorded policy lets it call (runs from
    before the policy was recorded: the current tools)."""
    policy = state.get("policy")
    if not policy:
        return ctx
    allowed = set(policy["tools"])
    if all(name in allowed for name in ctx.tools.names()):
        return ctx
    return replace(ctx, tools=ctx.tools.subset(n for n in ctx.tools.names() if n in allowed))


def _deadlines_after_wait(
    state: AgentState, ctx: AgentContext, runtime: Runtime[AgentContext]
) -> dict[str, Any]:
    """The run's deadlines moved on by the time it waited for a human.

    The step paused right after its checkpoint was saved, and resumes from that same
    checkpoint: the time since then (the checkpoint id is a time-ordered UUIDv6) is the
    human's, not the run's."""
    info = runtime.execution_info
    if info is None or not info.checkpoint_id:
        return {}
    try:
        stamp = CheckpointId(info.checkpoint_id)
    except ValueError:
        return {}
    if stamp.version != 6:  # not LangGraph's time-ordered id: nothing to go by
        return {}
    paused_at = (stamp.time - _UUID_EPOCH) / 1e7
    waited = ctx.clock() - paused_at
    if waited <= 0:
        return {}
    moved: dict[str, Any] = {"deadline": state["deadline"] + waited}
    if state.get("iteration_deadline"):
        moved["iteration_deadline"] = state["iteration_deadline"] + waited
    return moved


_UUID_EPOCH = 0x01B21DD213814000
"""100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch."""


def _thread_id() -> str | None:
    try:
        value = get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:
        return None
    return str(value) if value is not None else None


async def _run_call(
    state: AgentState, ctx: AgentContext, call: ToolCall, plan: Plan
) -> tuple[ToolMessage, ErrorRecord | None, Any]:
    started = ctx.timer()
    name, args, call_id = call["name"], call["args"], call["id"] or ""
    record: ErrorRecord | None = None
    status = "success"
    try:
        content = await _execute(state, ctx, call, plan)
    except ToolInputError as exc:
        content, status = redact(f"Error: {exc.message}"), "error"
        record = error_record(state, NODE, exc.code, "retryable", exc.message)
    except Exception as exc:
        if is_control_flow(exc):
            raise
        tool = ctx.tools.get(name)
        verdict = classify_tool_error(exc, tool.transient if tool else ())
        detail = (
            "timed out"
            if verdict.code == ErrorCode.TOOL_TIMEOUT
            else redact(f"failed: {type(exc).__name__}: {exc}")
        )
        content, status = f"Error: tool '{name}' {detail}", "error"
        record = error_record(state, NODE, verdict.code, verdict.kind, content)
    if len(content) > OBSERVATION_LIMIT:
        content = content[:OBSERVATION_LIMIT] + f"\n…[cut: {len(content)} characters in all]"
    message = ToolMessage(content=content, tool_call_id=call_id, name=name, status=status)
    step = trace_step(
        state,
        NODE,
        (ctx.timer() - started) * 1000,
        action=name,
        action_input=args,
        observation=content[:2000],
        error_code=record["code"] if record else None,
    )
    return message, record, step


async def _execute(state: AgentState, ctx: AgentContext, call: ToolCall, plan: Plan) -> str:
    tool = ctx.tools.get(call["name"])
    if tool is None:
        known = ", ".join(ctx.tools.names()) or "none"
        raise ToolInputError(
            f"unknown tool '{call['name']}'. Available tools: {known}", code=ErrorCode.UNKNOWN_TOOL
        )
    arguments = tool.validate(call["args"])
    limits = state["limits"]
    now = ctx.clock()
    deadline = min(state["deadline"], state.get("iteration_deadline") or state["deadline"])
    timeout = min(tool.timeout_s or limits["tool_timeout_s"], deadline - now)
    tool_ctx = ToolContext(
        settings=ctx.settings,
        tool_call_id=call["id"] or "",
        thread_id=_thread_id(),
        deadline=now + timeout,
        tenant=state.get("tenant", "default"),
        run_id=state.get("run_id"),
    )
    if timeout <= 0:
        raise TimeoutError
    return await plan.execute(  # journaled: at most once per idempotency key
        tool,
        tool_ctx,
        arguments,
        cached_tool_call(  # cacheable tools: tenant-scoped result cache
            ctx,
            state,
            tool,
            arguments,
            functools.partial(run_tool_guarded, ctx, tool, arguments, tool_ctx, timeout),
        ),
    )

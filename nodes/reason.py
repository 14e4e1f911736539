"""`reason`: ask the model for the next step and decide where the graph goes.

Writes `signal`: `tools` (act next), `answer` (finish), `repair` (malformed reply: ask
again with a hint), `retry` (the call failed retryably: ask again after backoff) or
`degrade` (deadline passed, attempts or repairs used up, or a non-retryable failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime

from keel.cost.budget import BudgetExceededError
from keel.errors import ErrorCode, MalformedOutputError, is_control_flow
from keel.nodes._compose import compose_prompt, should_compose
from keel.nodes._grounding import check_grounded, check_no_unrun_query
from keel.nodes._interpret import Decision, interpret
from keel.nodes._model_gate import ModelGate, ModelRequest
from keel.nodes._plan_gate import planned_stage
from keel.nodes._prompt import reason_request, repair_exchange
from keel.nodes._records import error_record, text_of, trace_step
from keel.nodes._resilience import plan_retry, retry_wait
from keel.nodes.context import AgentContext
from keel.resilience import classify_model_error
from keel.types import AgentState, TraceStep, UsageTotals

NODE = "reason"


def _trace_cost(usage: UsageTotals) -> dict[str, Any]:
    """A reply's `tokens` and `cost` fields for its trace row."""
    return {"tokens": usage["total_tokens"], "cost": usage["cost_usd"]}


def _rest_cost(used: UsageTotals, rows: list[TraceStep]) -> dict[str, Any]:
    """What the step's calls cost beyond `rows`: the step's last row carries it, so the
    rows of a step add up to every call it made (an unusable compose reply included)."""
    tokens = used["total_tokens"] - sum(int(r.get("tokens", 0)) for r in rows)
    cost = used["cost_usd"] - sum(float(r.get("cost", 0.0)) for r in rows)
    return {"tokens": tokens, "cost": round(cost, 10)}


def _degrade(
    state: AgentState,
    ctx: AgentContext,
    started: float,
    code: ErrorCode,
    message: str,
    **update: Any,
) -> dict[str, Any]:
    record = error_record(state, NODE, code, "degradable", message)
    return {
        **update,
        "signal": "degrade",
        "fatal_error": record,
        "errors": [record],
        "trace": [
            trace_step(
                state,
                NODE,
                (ctx.timer() - started) * 1000,
                signal="degrade",
                error_code=str(code),
                observation=message,
            )
        ],
    }


async def reason(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context.with_tier(state.get("tier"))
    started = ctx.timer()
    limits = state["limits"]
    now = ctx.clock()
    iteration_deadline = state.get("iteration_deadline") or now + limits["iteration_timeout_s"]
    if getattr(ctx.model, "stall_timeout_s", None) is not None:
        iteration_deadline = state["deadline"]  # `local:`: a busy machine is slow, not stuck
    keep = {"iteration_deadline": iteration_deadline}
    if now >= state["deadline"]:
        return _degrade(
            state, ctx, started, ErrorCode.DEADLINE_EXCEEDED, "the run's deadline passed", **keep
        )
    if now >= iteration_deadline:
        return _degrade(
            state,
            ctx,
            started,
            ErrorCode.DEADLINE_EXCEEDED,
            "the iteration's time limit passed",
            **keep,
        )

    attempt = state.get("model_attempt", 0)
    if attempt:
        await ctx.sleep(retry_wait(state, ctx, attempt))
    gate = ModelGate(state, ctx)
    deadline = min(state["deadline"], iteration_deadline)
    stage = planned_stage(state, ctx)  # data questions: the planned flow (nodes._planned)
    if stage is not None:  # the flow's module, imported by `planned_stage` for this agent
        from keel.nodes._planned import (
            answers_from_rows,
            planned_decision,
            planned_request,
            rows_reply,
        )
    if stage is None:
        request = reason_request(state, ctx, deadline)
    else:
        request = planned_request(stage, state, ctx, deadline)
    try:
        if stage is not None and answers_from_rows(stage):  # one value: no model call
            first = await rows_reply(stage)
        else:
            first = await gate.call(request)
    except BudgetExceededError as exc:
        return _degrade(state, ctx, started, exc.code, exc.message, **keep)
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return _model_failed(state, ctx, started, exc, attempt, keep, gate.used)
    reply = first.message
    ms = (ctx.timer() - started) * 1000
    draft_rows: list[TraceStep] = []
    try:
        if stage is None:
            decision = interpret(reply, ctx.mode, state.get("iteration", 0))
        else:
            last_try = state.get("repair_attempt", 0) >= limits["max_repairs"]
            decision = planned_decision(
                stage, reply, ctx, state.get("iteration", 0), last_try=last_try
            )
        shown = "" if stage is None else text_of(request.prompt[-1].content)  # a plan's rows
        _check_answer(decision, state, ctx, request.prompt, shown)
        if decision.answer is not None and stage is None:
            composed = await _compose(state, ctx, gate, decision, deadline)
            if composed is not None:
                draft_rows = [composed.draft_row(state, ms, _trace_cost(first.usage))]
                decision, ms = composed.decision, composed.ms
                _check_answer(decision, state, ctx, request.prompt, composed.shown)
    except MalformedOutputError as exc:
        cost = _rest_cost(gate.used, draft_rows)
        repairs = state.get("repair_attempt", 0) + 1
        record = error_record(state, NODE, exc.code, "retryable", exc.message, attempt=repairs)
        rejected = str(reply.content)
        if repairs > limits["max_repairs"]:
            out = _degrade(
                state,
                ctx,
                started,
                ErrorCode.MALFORMED_OUTPUT,
                f"malformed output after {repairs - 1} repairs: {exc.message}",
                **keep,
            )
            out["errors"] = [record, *out["errors"]]
            out["trace"] = [*draft_rows, {**out["trace"][0], **cost}]
            out["usage"] = gate.used
            return out
        return {
            **keep,
            "signal": "repair",
            "repair_attempt": repairs,
            "model_attempt": 0,
            "repair_hint": exc.message,
            "rejected_output": rejected[:4000],
            "usage": gate.used,
            "errors": [record],
            "trace": [
                *draft_rows,
                trace_step(
                    state,
                    NODE,
                    ms,
                    signal="repair",
                    attempt=repairs,
                    error_code=str(exc.code),
                    thought=rejected[:500],
                    observation=exc.message,
                    **cost,
                ),
            ],
        }

    await gate.keep_replies()
    cost = _rest_cost(gate.used, draft_rows)
    calls = decision.calls
    action = ", ".join(c["name"] for c in calls) or None
    action_input = (
        (calls[0]["args"] if len(calls) == 1 else [c["args"] for c in calls]) if calls else None
    )
    return {
        **keep,
        "messages": [*(repair_exchange(state) if calls else []), decision.message],
        "signal": "tools" if calls else "answer",
        "answer": decision.answer,
        "model_attempt": 0,
        "repair_attempt": 0,
        "repair_hint": None,
        "rejected_output": None,
        "usage": gate.used,
        "trace": [
            *draft_rows,
            trace_step(
                state,
                NODE,
                ms,
                signal="tools" if calls else "answer",
                thought=decision.thought,
                action=action,
                action_input=action_input,
                attempt=attempt,
                **cost,
            ),
        ],
    }


def _check_answer(
    decision: Decision,
    state: AgentState,
    ctx: AgentContext,
    prompt: list[BaseMessage],
    shown: str = "",
) -> None:
    """The grounding check of a final answer (raises `MalformedOutputError`)."""
    if decision.answer is not None and ctx.settings.grounded_answers and len(ctx.tools):
        check_no_unrun_query(decision.answer, state.get("question", ""), ctx.tools.names())
        messages = state.get("messages", [])
        check_grounded(decision.answer, messages, text_of(prompt[0].content), [shown])


@dataclass(frozen=True)
class _Composed:
    """The answer written by the tool-free compose call, replacing the model's draft."""

    decision: Decision
    ms: float
    draft: str
    shown: str
    """The compose prompt's text: its column sums count as sources for the grounding check."""

    def draft_row(self, state: AgentState, ms: float, cost: dict[str, Any]) -> TraceStep:
        return trace_step(state, NODE, ms, signal="compose", thought=self.draft[:500], **cost)


async def _compose(
    state: AgentState, ctx: AgentContext, gate: ModelGate, draft: Decision, deadline: float
) -> _Composed | None:
    """The two-step answer (see `nodes._compose`); None keeps the draft.

    A failed, refused (budget) or unusable compose call keeps the draft rather than failing
    the step: the draft is an answer too, and it still goes through the grounding check.
    What the call used is accounted by the gate either way.
    """
    if not should_compose(ctx.settings.compose_answers, ctx.model_name):
        return None
    prompt = compose_prompt(list(state.get("messages", [])), state.get("question", ""))
    if prompt is None:
        return None
    started = ctx.timer()
    request = ModelRequest(
        "compose", ctx, prompt, deadline, cache_read=state.get("signal") != "repair"
    )
    try:
        reply = (await gate.call(request)).message
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return None
    text = text_of(reply.content).strip()
    if not text or reply.response_metadata.get("finish_reason") == "length":
        return None
    message = AIMessage(
        content=text,
        id=reply.id,
        usage_metadata=reply.usage_metadata,
        response_metadata=reply.response_metadata,
    )
    return _Composed(
        decision=Decision(message=message, thought=None, answer=text),
        ms=(ctx.timer() - started) * 1000,
        draft=draft.answer or "",
        shown=text_of(prompt[-1].content),
    )


def _model_failed(
    state: AgentState,
    ctx: AgentContext,
    started: float,
    exc: Exception,
    attempt: int,
    keep: dict[str, Any],
    calls: UsageTotals,
) -> dict[str, Any]:
    """A failed call (`calls`: what it counted): retry after a backoff, or degrade."""
    verdict = classify_model_error(exc)
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    plan = plan_retry(
        ctx,
        attempt=attempt + 1,
        limit=state["limits"]["max_model_attempts"],
        retryable=verdict.kind == "retryable",
        deadline=min(state["deadline"], keep["iteration_deadline"]),
        retry_after=verdict.retry_after,
    )
    record = error_record(state, NODE, verdict.code, verdict.kind, message, attempt=plan.attempt)
    message = record["message"]  # secrets masked (keel.nodes._records); `why` below quotes it
    ms = (ctx.timer() - started) * 1000
    if plan.retry:
        return {
            **keep,
            "signal": "retry",
            "model_attempt": plan.attempt,
            "retry_delay_s": plan.delay_s,
            "usage": calls,
            "errors": [record],
            "trace": [
                trace_step(
                    state,
                    NODE,
                    ms,
                    signal="retry",
                    attempt=plan.attempt,
                    error_code=str(verdict.code),
                    observation=f"{message} (retrying in {plan.delay_s:.2f}s)",
                )
            ],
        }
    why = {
        "exhausted": f"model failed {plan.attempt} times; last: {message}",
        "deadline": f"model failed; waiting {plan.delay_s:.1f}s would pass the deadline: {message}",
        "not_retryable": f"model call failed ({verdict.kind}): {message}",
    }[plan.stop or "not_retryable"]
    return {
        **keep,
        "signal": "degrade",
        "model_attempt": plan.attempt,
        "fatal_error": {**record, "message": why},
        "usage": calls,
        "errors": [record],
        "trace": [
            trace_step(
                state,
                NODE,
                ms,
                signal="degrade",
                attempt=plan.attempt,
                error_code=str(verdict.code),
                observation=why,
            )
        ],
    }

"""Durable tool calls for `act`: human approval, the idempotency journal, unknown outcomes.

`act` is re-run from its start whenever it resumes (after an `interrupt()` or a crash), so
everything here is safe to repeat:

1. `plan_calls` runs first, before any tool: it asks a human about every call whose tool
   `requires_approval` (always in call order, so LangGraph matches replayed answers to the
   same questions), then settles every non-idempotent call the journal shows as *started*
   but never finished: the tool's `reconcile(key)` hook decides, or a human is asked
   ("outcome unknown"). Nothing runs while a question is open.
2. `Plan.execute` wraps one tool invocation: a recorded outcome is reused (the tool is not
   called), otherwise *started* is journaled before the call and the outcome after it.
3. `settle_all` runs the calls side by side but lets none outlive the step: when one raises
   (a crash, an interrupt), the others finish first, so the journal a resumed run reads is
   the same whatever the timing, and it asks the same questions in the same order.

Interrupt payloads and resume values are plain JSON (see `ReviewRequest` and `Decision`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from langchain_core.messages import ToolCall
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from keel.errors import ErrorCode, ToolError, ToolInputError, is_control_flow
from keel.journal import JournalEntry, ToolJournal
from keel.tools.registry import Reconciled, Tool, ToolContext

__all__ = ["Decision", "Plan", "ReviewRequest", "plan_calls", "settle_all"]

T = TypeVar("T")

MAX_REVIEWS = 10
"""Invalid answers to one question before the call is treated as rejected."""


class Decision(BaseModel):
    """A reviewer's answer (the value given to `Command(resume=...)`)."""

    action: Literal["approve", "edit", "reject"]
    arguments: dict[str, Any] | None = None
    """New arguments (edit): validated against the tool's schema before anything runs."""
    reason: str | None = None
    """Why the call was rejected: the model sees it."""
    kind: Literal["approval", "outcome_unknown"] | None = None
    tool_call_id: str | None = None
    attempt: int | None = None
    """`kind`, `tool_call_id` and `attempt` say which request this answers (copy them from
    the request; `Agent.aapprove` does). An answer for another request is not applied:
    when a replay no longer asks that question, its answer is passed over."""

    def answers(self, request: ReviewRequest) -> bool:
        return (
            (self.kind is None or self.kind == request.kind)
            and (self.tool_call_id is None or self.tool_call_id == request.tool_call_id)
            and (self.attempt is None or self.attempt == request.attempt)
        )


class ReviewRequest(BaseModel):
    """What an interrupt shows the reviewer (the interrupt's value, as a dict)."""

    kind: Literal["approval", "outcome_unknown"]
    tool: str
    tool_call_id: str
    idempotency_key: str
    arguments: dict[str, Any]
    message: str
    attempt: int = 0
    """Which try of the call this is about (an unknown outcome of a re-run is asked anew)."""
    error: str | None = None
    """Why the previous answer was refused (e.g. edited arguments that do not validate)."""


@dataclass
class Plan:
    """Calls ready to run: arguments after edits, rejections, and recorded outcomes."""

    journal: ToolJournal | None
    run_id: str | None
    calls: list[ToolCall] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    edited: set[str] = field(default_factory=set)
    unclaimed: list[Decision] = field(default_factory=list)
    """Answers handed back for a request this replay has not asked (yet)."""
    rerun: dict[str, int] = field(default_factory=dict)
    """Calls whose earlier attempt has an unknown outcome, cleared to run again: the
    number of the new attempt."""
    answered: bool = False
    """A human answered a question in this step: the run waited for them (see `act`)."""

    async def execute(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: BaseModel,
        invoke: Callable[[], Awaitable[str]],
    ) -> str:
        """Run one validated call at most once per idempotency key."""
        call_id = ctx.tool_call_id
        if call_id in self.rejected:
            raise ToolInputError(
                f"a reviewer rejected the call to '{tool.name}': {self.rejected[call_id]}",
                code=ErrorCode.TOOL_REJECTED,
            )
        note = (
            f"[a reviewer changed the arguments to {canonical(arguments)}]\n"
            if call_id in self.edited
            else ""
        )
        if self.journal is None or tool.idempotent:
            return note + await invoke()
        key = ctx.idempotency_key
        entry = await self.journal.get(key)
        if entry is not None and entry.status != "started":
            if entry.arguments != canonical(arguments):
                raise ToolError(
                    f"idempotency key {key} was already used for a different '{entry.tool}' "
                    f"call ({entry.arguments}); a forked run must not reuse a tool_call_id"
                )
            return note + _replay(entry)
        if entry is not None and call_id not in self.rerun:
            raise ToolError(f"'{tool.name}' call {key} has an unknown outcome and was not cleared")
        await self.journal.start(
            key,
            tool=tool.name,
            arguments=canonical(arguments),
            run_id=self.run_id,
            attempt=self.rerun.get(call_id, 0),
        )
        try:
            result = await invoke()
        except TimeoutError:
            raise  # the call may still have had its effect: the outcome stays unknown
        except Exception as exc:
            if not is_control_flow(exc):
                await self.journal.finish(key, status="failed", result=_failure(exc))
            raise
        await self.journal.finish(key, status="completed", result=result)
        return note + result


async def settle_all(runs: Sequence[Awaitable[T]]) -> list[T]:
    """Await all runs concurrently; if any raised, raise the first in call order once every
    run has settled.

    A plain `gather` hands the first exception up at once and leaves the other calls running
    as orphans: they journal *started* or even call their tool after the step has failed,
    racing the resumed run (which then asks about a different set of calls, or runs one
    twice)."""
    if len(runs) == 1:  # nothing to wait for beside it (and no task to make)
        return [await runs[0]]
    settled = await asyncio.gather(*runs, return_exceptions=True)
    failure = next((r for r in settled if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure
    return settled  # type: ignore[return-value]  # no exception left: all are T


def canonical(arguments: BaseModel | dict[str, Any]) -> str:
    data = arguments.model_dump(mode="json") if isinstance(arguments, BaseModel) else arguments
    return json.dumps(data, sort_keys=True, default=str)


def _failure(exc: Exception) -> str:
    """A failed call as the journal keeps it, so a replay reports the same error."""
    if isinstance(exc, ToolInputError):
        return json.dumps({"refused": True, "code": str(exc.code), "message": exc.message})
    return json.dumps({"refused": False, "message": f"{type(exc).__name__}: {exc}"})


def _replay(entry: JournalEntry) -> str:
    """The recorded outcome of a finished call: its result, or its error raised again."""
    if entry.status == "completed":
        return entry.result or ""
    failure = json.loads(entry.result or "{}")
    if failure.get("refused"):
        raise ToolInputError(failure["message"], code=ErrorCode(failure["code"]))
    raise ToolError(f"the call failed before the step was saved: {failure.get('message')}")


async def plan_calls(
    calls: list[ToolCall],
    *,
    tools: Any,
    journal: ToolJournal | None,
    thread_id: str | None,
    run_id: str | None,
    approval: Collection[str] = (),
) -> Plan:
    """Settle approvals and unknown outcomes for these calls; may `interrupt()` the run.

    A call needs approval when its tool `requires_approval` or is named in `approval` (the
    run's recorded policy, which a process configured differently must not relax)."""
    plan = Plan(journal=journal, run_id=run_id)
    for call in calls:
        tool = tools.get(call["name"])
        if tool is not None and (tool.requires_approval or tool.name in approval):
            call = _review(call, tool, plan, _key(thread_id, call), "approval", 0)
        plan.calls.append(call)
    if journal is None:
        return plan
    for i, call in enumerate(plan.calls):
        tool = tools.get(call["name"])
        if tool is None or tool.idempotent or call["id"] in plan.rejected:
            continue
        key = _key(thread_id, call)
        entry = await journal.get(key)
        if entry is None or entry.status != "started":
            continue
        verdict = await _reconcile(tool, key)
        if verdict.happened is True:
            await journal.finish(key, status="completed", result=verdict.result)
        elif verdict.happened is False:
            plan.rerun[call["id"] or ""] = entry.attempt + 1
        else:
            plan.calls[i] = _review(call, tool, plan, key, "outcome_unknown", entry.attempt)
            plan.rerun[call["id"] or ""] = entry.attempt + 1
    return plan


def _key(thread_id: str | None, call: ToolCall) -> str:
    return ToolContext.key_for(thread_id, call["id"] or "")


async def _reconcile(tool: Tool, key: str) -> Reconciled:
    if tool.reconcile is None:
        return Reconciled.unknown()
    verdict = tool.reconcile(key)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if not isinstance(verdict, Reconciled):
        raise ToolError(f"reconcile hook of '{tool.name}' must return Reconciled, got {verdict!r}")
    return verdict


_MESSAGES = {
    "approval": "'{tool}' needs approval before it runs: approve, edit the arguments or reject.",
    "outcome_unknown": (
        "outcome unknown: '{tool}' started before a crash and never reported back, and it has "
        "no reconcile hook. Check the external system for key {key}, then approve (run it "
        "again), edit, or reject (tell the model it did not run)."
    ),
}


def _review(
    call: ToolCall,
    tool: Tool,
    plan: Plan,
    key: str,
    kind: Literal["approval", "outcome_unknown"],
    attempt: int,
) -> ToolCall:
    """Ask a human about one call until the answer is usable; returns the call to run.

    LangGraph hands back answers by position, and a replay may ask fewer questions than
    before (a call that has finished meanwhile is not asked about). So an answer that names
    another request is never applied here: it is kept for the request it names."""
    error: str | None = None
    invalid = 0
    while invalid < MAX_REVIEWS:
        request = ReviewRequest(
            kind=kind,
            tool=tool.name,
            tool_call_id=call["id"] or "",
            idempotency_key=key,
            arguments=call["args"],
            message=_MESSAGES[kind].format(tool=tool.name, key=key),
            attempt=attempt,
            error=error,
        )
        kept = next((d for d in plan.unclaimed if d.answers(request) and d.kind), None)
        if kept is not None:
            plan.unclaimed.remove(kept)
        if kept is not None:
            answer = kept
        else:
            answer = interrupt(request.model_dump())
            plan.answered = True
        try:
            decision = Decision.model_validate(answer)
            if not decision.answers(request):
                plan.unclaimed.append(decision)
                continue
            if decision.action == "reject":
                plan.rejected[call["id"] or ""] = decision.reason or "no reason given"
                return call
            if decision.action == "approve":
                return call
            if decision.arguments is None:
                raise ValueError("edit needs 'arguments' (a JSON object)")
            tool.validate(decision.arguments)
        except (ValidationError, ValueError, ToolInputError) as exc:
            error = str(exc.message if isinstance(exc, ToolInputError) else exc)
            invalid += 1
            continue
        plan.edited.add(call["id"] or "")
        return ToolCall(name=call["name"], args=decision.arguments, id=call["id"], type="tool_call")
    plan.rejected[call["id"] or ""] = f"no valid answer after {MAX_REVIEWS} tries: {error}"
    return call

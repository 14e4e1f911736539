"""`scripted:tickets`: the ticket desk's headline task, played the way a good model would.

"Ticket 42: the customer was charged twice for order 3405 — refund the duplicate and tell
them": read the ticket (its customer's orders carry the total and what was refunded),
look up the help-centre article on duplicate charges, refund what is left of the order
(`refund_order`; when it answers that the amount needs approval, `refund_order_large`),
write a public comment with the amount and the article's timing, mark the ticket solved and
report. A refused refund (already refunded, rejected by the reviewer, …) ends the run with
the reason. Every step is a function of the conversation, so a resumed or retried run
continues where it stood. Native tool calls when tools are bound, ReAct text otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.testing.scripted import CallInfo, Reply

__all__ = ["tickets_policy"]

_TICKET = re.compile(r"ticket\s*#?\s*(\d+)", re.IGNORECASE)
_ORDER = re.compile(r"order\s*#?\s*(\d+)", re.IGNORECASE)
_ACTION = re.compile(r"Action:\s*(\S+)\s*\nAction Input:\s*(\{.*\})", re.DOTALL)
_TIMING = re.compile(r"within (\d+ to \d+ business days)")


@dataclass(frozen=True)
class _Step:
    tool: str
    args: dict[str, Any]
    result: str

    @property
    def failed(self) -> bool:
        return self.result.startswith("Error")

    def data(self) -> dict[str, Any]:
        try:
            value = json.loads(self.result)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def _steps(messages: list[BaseMessage]) -> list[_Step]:
    """Each tool call with its result, in order, in either protocol."""
    steps: list[_Step] = []
    pending: list[tuple[str, dict[str, Any]]] = []
    for m in messages:
        if isinstance(m, AIMessage):
            if m.tool_calls:
                pending = [(c["name"], c["args"]) for c in m.tool_calls]
            else:
                found = _ACTION.search(str(m.content))
                if found:
                    pending = [(found.group(1), json.loads(found.group(2)))]
        elif isinstance(m, ToolMessage) and pending:
            name, args = pending.pop(0)
            steps.append(_Step(name, args, str(m.content)))
        elif isinstance(m, HumanMessage) and str(m.content).startswith("Observation: ") and pending:
            name, args = pending.pop(0)
            steps.append(_Step(name, args, str(m.content).removeprefix("Observation: ")))
    return steps


def _call(info: CallInfo, tool: str, args: dict[str, Any]) -> AIMessage:
    if info.tools:
        return AIMessage(
            content="",
            tool_calls=[{"name": tool, "args": args, "id": f"call_{tool}_{info.index}"}],
        )
    return AIMessage(
        content=f"Thought: next, {tool}.\nAction: {tool}\nAction Input: {json.dumps(args)}"
    )


def _final(info: CallInfo, answer: str) -> AIMessage:
    return AIMessage(
        content=answer if info.tools else f"Thought: I know the answer.\nFinal Answer: {answer}"
    )


def tickets_policy(messages: list[BaseMessage], info: CallInfo) -> Reply:
    question = next((str(m.content) for m in messages if isinstance(m, HumanMessage)), "")
    ticket = _TICKET.search(question)
    if ticket is None:
        return _final(info, "Which ticket? Please give its number, e.g. 'Ticket 42: …'.")
    ticket_id = int(ticket.group(1))
    steps = _steps(messages)
    if not steps:
        return _call(info, "read_ticket", {"ticket_id": ticket_id})
    read = steps[0]
    if read.failed:
        return _final(info, f"I could not read ticket {ticket_id}: {read.result}")
    facts = read.data()
    named = _ORDER.search(question)
    order_id = int(named.group(1)) if named else facts["ticket"]["order_id"]
    order = next((o for o in facts.get("orders", []) if o["order_id"] == order_id), None)
    if order is None:
        return _final(
            info,
            f"Order {order_id} is not among the latest orders of ticket {ticket_id}'s customer.",
        )
    if len(steps) == 1:
        return _call(info, "search_articles", {"query": "charged twice duplicate charge refund"})
    last = steps[-1]
    refunds = [s for s in steps if s.tool in ("refund_order", "refund_order_large")]
    amount = round(order["total"] - order["refunded"], 2)
    refund_args = {
        "order_id": order_id,
        "amount": amount,
        "reason": f"duplicate charge reported in ticket {ticket_id}",
        "ticket_id": ticket_id,
    }
    if not refunds:
        return _call(info, "refund_order", refund_args)
    if last.tool == "refund_order" and last.failed and "refund_order_large" in last.result:
        return _call(info, "refund_order_large", refund_args)
    if last.tool in ("refund_order", "refund_order_large"):
        if last.failed:
            return _final(info, f"No refund was made for order {order_id}: {last.result}")
        done = last.data()
        timing = _TIMING.search(steps[1].result)
        when = f" It will show on your statement within {timing.group(1)}." if timing else ""
        return _call(
            info,
            "add_comment",
            {
                "ticket_id": ticket_id,
                "body": f"We are sorry you were charged twice. We refunded the duplicate charge "
                f"of ${done['amount']:.2f} for order {order_id} (refund {done['refund_id']})."
                + when,
                "public": True,
            },
        )
    if last.tool == "add_comment":
        if last.failed:
            return _final(info, f"The refund was made but the comment failed: {last.result}")
        return _call(info, "set_ticket_status", {"ticket_id": ticket_id, "status": "solved"})
    refund = next(s for s in reversed(refunds) if not s.failed).data()
    comment = next(s for s in reversed(steps) if s.tool == "add_comment").data()
    return _final(
        info,
        f"Refunded ${refund['amount']:.2f} for order {order_id} (refund {refund['refund_id']}), "
        f"told the customer in comment {comment['comment_id']} on ticket {ticket_id}"
        + (", and marked the ticket solved." if not last.failed else f"; status: {last.result}"),
    )

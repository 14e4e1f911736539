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

from keel.testing.replies import call
from keel.testing.replies import final as _final
from keel.testing.replies import question as _question
from keel.testing.scripted import CallInfo, Reply

__all__ = ["tickets_policy"]

_TICKET = re.compile(r"ticket\s*#?\s*(\d+)", re.IGNORECASE)
_ORDER = re.compile(r"order\s*#?\s*(\d+)", re.IGNORECASE)
_ACTION = re.compile(r"Action:\s*(\S+)\s*\nAction Input:\s*(\{.*\})", re.DOTALL)
_TIMING = re.compile(r"(\d+ to \d+ business days)")
_TOOLS = frozenset(
    [
        "read_ticket",
        "search_articles",
        "refund_order",
        "refund_order_large",
        "add_comment",
        "set_ticket_status",
    ]
)


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
    """Each tool call with its result, in order, in either protocol (native results are
    matched to their calls by id)."""
    steps: list[_Step] = []
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    pending: tuple[str, dict[str, Any]] | None = None
    for m in messages:
        if isinstance(m, AIMessage):
            calls.update({c["id"] or "": (c["name"], c["args"]) for c in m.tool_calls})
            found = _ACTION.search(str(m.content))
            if found:
                try:
                    pending = (found.group(1), json.loads(found.group(2)))
                except ValueError:
                    pending = None
        elif isinstance(m, ToolMessage) and m.tool_call_id in calls:
            name, args = calls[m.tool_call_id]
            steps.append(_Step(name, args, str(m.content)))
        elif isinstance(m, HumanMessage) and str(m.content).startswith("Observation: ") and pending:
            steps.append(_Step(*pending, str(m.content).removeprefix("Observation: ")))
            pending = None
    return steps


def _call(info: CallInfo, tool: str, args: dict[str, Any], turn: int) -> AIMessage:
    """A call whose id is unique in the conversation (`turn`: replies so far), so a tool
    called again later never reuses an idempotency key."""
    call_id = f"call_{tool}_{turn}_{info.index}"
    return call(info, tool, args, f"next, {tool}.", call_id=call_id)


def tickets_policy(messages: list[BaseMessage], info: CallInfo) -> Reply:
    question = _question(messages)
    ticket = _TICKET.search(question)
    if ticket is None:
        return _final(info, "Which ticket? Please give its number, e.g. 'Ticket 42: …'.")
    ticket_id = int(ticket.group(1))
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    steps = [s for s in _steps(messages) if s.tool in _TOOLS]  # calls to unknown tools: noise
    done = {s.tool: s for s in steps if not s.failed}
    failed = {s.tool: s for s in steps if s.failed}
    if "read_ticket" not in done:
        if "read_ticket" in failed:
            return _final(
                info, f"I could not read ticket {ticket_id}: {failed['read_ticket'].result}"
            )
        return _call(info, "read_ticket", {"ticket_id": ticket_id}, turn)
    facts = done["read_ticket"].data()
    named = _ORDER.search(question)
    order_id = int(named.group(1)) if named else facts["ticket"]["order_id"]
    order = next((o for o in facts.get("orders", []) if o["order_id"] == order_id), None)
    if order is None:
        return _final(
            info,
            f"Order {order_id} is not among the latest orders of ticket {ticket_id}'s customer.",
        )
    if "search_articles" not in done and "search_articles" not in failed:
        return _call(
            info, "search_articles", {"query": "charged twice duplicate charge refund"}, turn
        )
    refund = done.get("refund_order_large") or done.get("refund_order")
    if refund is None:
        tried = [s for s in steps if s.tool in ("refund_order", "refund_order_large")]
        args = {
            "order_id": order_id,
            "amount": round(order["total"] - order["refunded"], 2),
            "reason": f"duplicate charge reported in ticket {ticket_id}",
            "ticket_id": ticket_id,
        }
        if not tried:
            return _call(info, "refund_order", args, turn)
        last = tried[-1]
        if last.tool == "refund_order" and "refund_order_large" in last.result:
            return _call(info, "refund_order_large", args, turn)
        return _final(info, f"No refund was made for order {order_id}: {last.result}")
    refunded = refund.data()
    if "add_comment" not in done:
        if "add_comment" in failed:
            return _final(
                info,
                f"Refunded ${refunded['amount']:.2f} for order {order_id}, but the comment "
                f"failed: {failed['add_comment'].result}",
            )
        articles = done.get("search_articles")
        timing = _TIMING.search(articles.result) if articles else None
        when = f" It will show on your statement within {timing.group(1)}." if timing else ""
        return _call(
            info,
            "add_comment",
            turn=turn,
            args={
                "ticket_id": ticket_id,
                "body": f"We are sorry you were charged twice. We refunded the duplicate charge "
                f"of ${refunded['amount']:.2f} for order {order_id} "
                f"(refund {refunded['refund_id']})." + when,
                "public": True,
            },
        )
    comment = done["add_comment"].data()
    if "set_ticket_status" not in done and "set_ticket_status" not in failed:
        return _call(info, "set_ticket_status", {"ticket_id": ticket_id, "status": "solved"}, turn)
    status = done.get("set_ticket_status")
    return _final(
        info,
        f"Refunded ${refunded['amount']:.2f} for order {order_id} "
        f"(refund {refunded['refund_id']}), told the customer in comment "
        f"{comment['comment_id']} on ticket {ticket_id}"
        + (
            ", and marked the ticket solved."
            if status
            else f"; the status was not changed: {failed['set_ticket_status'].result}"
        ),
    )

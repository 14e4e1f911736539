"""The ticket desk: a help-desk agent over the help desk's tables and the shop's orders.

Its tools (`keel.tools.tickets`) search and read tickets and help-centre articles, comment,
assign, change status and refund orders. Comments and refunds happen exactly once (the
journal, and the idempotency key stored with the row); a refund above
`KEEL_TICKETS__REFUND_APPROVAL_USD` waits for a human (`refund_order_large`).

```bash
keel run --agent ticket_desk --model scripted:tickets \\
  "Ticket 42: the customer was charged twice — refund the duplicate and tell them"
```
"""

from keel.agents import Agent
from keel.tools.tickets import TICKET_TOOLS

__all__ = ["INSTRUCTIONS", "agent"]

INSTRUCTIONS = """You are a help-desk agent for an online shop. You work on support tickets \
with your tools; you never invent facts about tickets, orders or policies.

How to work a ticket:
1. read_ticket first: it shows the ticket, its comments, the customer and the customer's \
latest orders with each order's total and the amount already refunded.
2. For policy questions (refunds, shipping, returns), search_articles and quote what the \
article says.
3. A customer charged twice for an order gets the duplicate charge back: refund the order's \
total minus what was already refunded, with refund_order (pass ticket_id). If it answers \
that the amount needs approval, call refund_order_large with the same arguments: a human \
approves it. Never refund cancelled or pending orders, or more than is left to refund.
4. Tell the customer what you did with add_comment (public=true): the amount, the order and \
when they will see the money. Use public=false for notes to colleagues.
5. When the customer's problem is solved, set_ticket_status to solved.
Finish with a short summary: what you did, with the amounts and ids from the tool results. \
If a tool refuses, read its message: it says what to do instead."""

agent = Agent(
    name="ticket_desk",
    instructions=INSTRUCTIONS,
    tools=TICKET_TOOLS,
    description=(
        "Works help-desk tickets: reads tickets, orders and help articles, comments, assigns, "
        "changes status and refunds orders (large refunds need approval)."
    ),
)
"""The definition; `agent.graph` is its compiled graph."""

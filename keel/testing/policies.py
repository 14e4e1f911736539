"""Named scripted models for `scripted:<name>` specs: deterministic agents for demos and CI.

- `scripted:echo` answers at once, without tools.
- `scripted:sales` answers the sample database's headline question the way a good model
  would: one SQL query, one calculator call for the total, then the answer. It speaks
  native tool calls when tools are bound and the ReAct text protocol otherwise.
- `scripted:report` writes last month's sales report (`keel.testing.report_script`).
- `scripted:tickets` handles the ticket desk's headline task (`keel.testing.ticket_policy`).
- `scripted:review` reviews a change in a git repository (`keel.testing.review_script`).

The last three live in their own modules, imported when their policy is first looked up: a
`scripted:echo` or `scripted:sales` run loads none of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from importlib import import_module

from langchain_core.messages import BaseMessage

from keel.errors import ModelSpecError
from keel.testing.replies import call as _call
from keel.testing.replies import final as _final
from keel.testing.replies import observations as _observations
from keel.testing.replies import question as _question
from keel.testing.scripted import CallInfo, FunctionModel, Reply

__all__ = ["POLICIES", "TOP_PRODUCTS_SQL", "scripted_model"]

TOP_PRODUCTS_SQL = (
    "SELECT p.name AS product, ROUND(SUM(oi.quantity * oi.unit_price), 2) AS revenue "
    "FROM order_items oi JOIN orders o ON o.id = oi.order_id "
    "JOIN products p ON p.id = oi.product_id "
    "WHERE o.status = 'completed' "
    "AND o.order_date >= date('now', 'localtime', 'start of month', '-1 month') "
    "AND o.order_date < date('now', 'localtime', 'start of month') "
    "GROUP BY p.id, p.name ORDER BY revenue DESC LIMIT 3"
)


def _sales(messages: list[BaseMessage], info: CallInfo) -> Reply:
    question = _question(messages).lower()
    if "product" not in question or "revenue" not in question:
        return _final(info, "I can only answer questions about top products by revenue.")
    # a call to a tool that does not exist (a provider's fault) changes nothing: go on
    seen = [o for o in _observations(messages) if not o.startswith("Error: unknown tool")]
    if not seen:
        return _call(
            info,
            "sql_query",
            {"query": TOP_PRODUCTS_SQL},
            "I need last month's revenue per product.",
        )
    try:
        rows = json.loads(seen[0])["rows"]
    except (ValueError, KeyError, TypeError):
        return _final(info, f"The query failed: {seen[0][:300]}")
    if len(seen) == 1:
        expression = " + ".join(str(r[1]) for r in rows) or "0"
        return _call(info, "calculator", {"expression": expression}, "Now I add up their revenue.")
    total = float(seen[1])
    ranked = "; ".join(f"{i}. {r[0]} (${r[1]:,.2f})" for i, r in enumerate(rows, 1))
    return _final(
        info,
        f"The top {len(rows)} products by revenue last month were: {ranked}. "
        f"Their total revenue was ${total:,.2f}.",
    )


def _echo(messages: list[BaseMessage], info: CallInfo) -> Reply:
    return _final(info, f"You asked: {_question(messages)}")


Policy = Callable[[list[BaseMessage], CallInfo], Reply]


class _Policies(Mapping[str, Policy]):
    """Policies by name, in their order; one kept in a module of its own (`module:function`)
    is imported when first looked up."""

    def __init__(self, policies: dict[str, Policy | str]) -> None:
        self._policies = policies

    def __getitem__(self, name: str) -> Policy:
        policy = self._policies[name]
        if isinstance(policy, str):
            module, _, function = policy.partition(":")
            policy = self._policies[name] = getattr(import_module(module), function)
        return policy

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)


POLICIES: Mapping[str, Policy] = _Policies(
    {
        "echo": _echo,
        "sales": _sales,
        "tickets": "keel.testing.ticket_policy:tickets_policy",
        "report": "keel.testing.report_script:report_policy",
        "review": "keel.testing.review_script:review_policy",
    }
)


def scripted_model(name: str) -> FunctionModel:
    """The scripted model a `scripted:<name>` spec names.

    `<name>-react` forces ReAct; `<name>@<n>ms` waits n milliseconds per call (benchmarks).
    """
    policy, _, latency = name.partition("@")
    base, _, variant = policy.partition("-")
    latency_ms = latency.removesuffix("ms")
    if (
        base not in POLICIES
        or variant not in ("", "react")
        or (latency and (not latency.endswith("ms") or not latency_ms.isdigit()))
    ):
        known = ", ".join(sorted(POLICIES))
        raise ModelSpecError(
            f"unknown scripted model '{name}'; known: {known} (+ '-react', '@<n>ms')"
        )
    return FunctionModel(
        fn=POLICIES[base],
        model_name=f"scripted:{name}",
        supports_tool_calling=variant != "react",
        latency_s=int(latency_ms) / 1000 if latency else 0.0,
    )

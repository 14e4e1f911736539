"""`scripted:report`: the report writer played the way a good model would, with no LLM.

"Write the sales report for last month" → `write_report(last month's YYYY-MM, title)` → a
final answer naming the stored artifacts and stating the figures the tool returned.
A `YYYY-MM` in the question picks that month; "this month" the current one. It speaks
native tool calls when tools are bound and the ReAct text protocol otherwise.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from langchain_core.messages import BaseMessage

from keel.testing.replies import call as _call
from keel.testing.replies import final as _final
from keel.testing.replies import observations as _observations
from keel.testing.replies import question as _question
from keel.testing.scripted import CallInfo, Reply

__all__ = ["report_policy", "wanted_month"]

_MONTH = re.compile(r"\b(\d{4}-\d{2})\b")


def wanted_month(question: str, today: date) -> str:
    """The month a request asks about: an explicit `YYYY-MM`, this month, or last month."""
    found = _MONTH.search(question)
    if found:
        return found.group(1)
    if "this month" in question.lower():
        return f"{today:%Y-%m}"
    index = today.year * 12 + today.month - 2
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_name(month: str) -> str:
    return date.fromisoformat(f"{month}-01").strftime("%B %Y")


def _summary(figures: dict[str, Any]) -> str:
    change = figures["revenue_change_pct"]
    versus = (
        f"{change:+.1f}% against {_month_name(figures['previous_month'])} "
        f"(${figures['previous_revenue']:,.2f})"
        if change is not None
        else f"with no revenue in {_month_name(figures['previous_month'])} to compare with"
    )
    text = (
        f"Revenue was ${figures['revenue']:,.2f}, {versus}, from "
        f"{figures['completed_orders']} completed orders."
    )
    if figures["top_products"]:
        top = figures["top_products"][0]
        text += f" The best seller was {top['name']} with ${top['revenue']:,.2f}."
    return text


def report_policy(messages: list[BaseMessage], info: CallInfo) -> Reply:
    question = _question(messages)
    if "report" not in question.lower():
        return _final(info, "I write monthly sales reports: ask for the report of a month.")
    seen = _observations(messages)
    month = wanted_month(question, date.today())
    if not seen:
        args = {"month": month, "title": f"Sales report, {_month_name(month)}"}
        return _call(info, "write_report", args, "I write and store the month's report.")
    try:
        written = json.loads(seen[0])
        stored = written["stored"]
    except (ValueError, KeyError, TypeError):
        return _final(info, f"The report could not be written: {seen[0][:300]}")
    files = ", ".join(f"{name} ({aid})" for name, aid in stored.items())
    return _final(
        info,
        f"The sales report for {_month_name(written['month'])} is stored: {files}. "
        f"{_summary(written)}",
    )

"""Composing the final answer in a separate, tool-free call: the two-step answer.

A small model that has the right tool results often answers only part of the question: after
the calculator's total, the 0.5B local model wrote "The total revenue for the 3 products last
month was 137,246.28." and dropped the product names it had listed a step earlier. Asked
again in a short, fresh prompt (the question, the calls made and their results, no tools
bound) it answered the whole question 3 times out of 3. So when composing is on, the model's
own final answer is a draft; the answer is written by that second call.

`auto` composes for `local:` models only: hosted models answer from the full conversation well
and the extra call would cost money.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.nodes._records import question_start, text_of
from keel.tools.calculator import format_number

__all__ = ["COMPOSE_SYSTEM", "ComposeMode", "compose_prompt", "should_compose"]

ComposeMode = Literal["auto", "always", "never"]

COMPOSE_SYSTEM = (
    "You write the final answer to a question from the results of tools that were already "
    "run. Use only names and numbers from the results. Answer every part of the question."
)
COMPOSE_REQUEST = (
    "Answer the question in plain text, in one or two sentences, with every name and number "
    "it asks for."
)
_MAX_RESULT_CHARS = 2000
_ASKS_FOR_TOTAL = re.compile(r"\b(total|sum|altogether|in all|combined)\b", re.IGNORECASE)


def should_compose(mode: ComposeMode, model_spec: str) -> bool:
    """Whether final answers of `model_spec` are written by a separate tool-free call."""
    if mode == "auto":
        return model_spec.startswith("local:")
    return mode == "always"


def _call_text(name: str, args: object) -> str:
    if isinstance(args, dict) and len(args) == 1:
        (value,) = args.values()
        if isinstance(value, str):
            return f"{name}: {value}"
    return f"{name}: {json.dumps(args, ensure_ascii=False, default=str)}"


def column_sums(result: str) -> list[str]:
    """`sum of <column> over these N rows: X` for each all-numeric column of a table result.

    Only for a complete result (`sql_query`'s shape, not truncated) of at least two rows.
    """
    try:
        table: Any = json.loads(result)
    except ValueError:
        return []
    if not isinstance(table, dict) or table.get("truncated"):
        return []
    columns, rows = table.get("columns"), table.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list) or len(rows) < 2:
        return []
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return []
    sums = []
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            total = format_number(sum(values))
            sums.append(f"sum of {column} over these {len(rows)} rows: {total}")
    return sums


def _steps(messages: list[BaseMessage], question: str) -> list[str]:
    """`call → result` lines for the tools run since the question was asked, in order.

    Failed calls are left out: their errors were for the model to correct, not to report.
    When the question asks for a total, a table result is followed by its column sums: the
    0.5B model, given three revenues and asked for their total, wrote one of the three.
    """
    start = question_start(messages, question)
    calls: dict[str, str] = {}
    lines: list[str] = []
    step = 0
    for message in messages[start:]:
        if isinstance(message, AIMessage):
            for tool_call in message.tool_calls:
                calls[tool_call.get("id") or ""] = _call_text(tool_call["name"], tool_call["args"])
        elif isinstance(message, ToolMessage) and message.status != "error":
            call = calls.get(message.tool_call_id) or message.name or "tool"
            result = text_of(message.content)
            sums = column_sums(result) if _ASKS_FOR_TOTAL.search(question) else []
            if len(result) > _MAX_RESULT_CHARS:
                result = result[:_MAX_RESULT_CHARS] + " …(cut)"
            step += 1
            lines.append(f"{step}. {call}\n   result: {result}")
            lines += [f"   {line}" for line in sums]
    return lines


def compose_prompt(messages: list[BaseMessage], question: str) -> list[BaseMessage] | None:
    """The tool-free prompt that writes the answer, or None when no tool ran for `question`."""
    steps = _steps(messages, question)
    if not steps:
        return None
    results = "\n".join(steps)
    return [
        SystemMessage(COMPOSE_SYSTEM),
        HumanMessage(f"Question: {question}\n\nTool results:\n{results}\n\n{COMPOSE_REQUEST}"),
    ]

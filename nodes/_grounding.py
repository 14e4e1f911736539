"""A final answer may only state numbers the run has actually seen.

Small models summarise tool results badly: the 0.5B local model listed the right products and
then gave a "total" that appeared nowhere (28,048.22 for three revenues adding up to 137,246.28).
Such an answer is rejected like malformed output, so the graph's repair edge asks the model
again, telling it which numbers are unsupported and to compute them with a tool.

A number is supported when it matches, to the precision it is written with, a number in a tool
result, the question or the system prompt ("99,625" matches 99625.22). Small whole numbers
(below 100: "3 products", "2 orders") are not checked: prose is full of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from keel.errors import ErrorCode, MalformedOutputError
from keel.nodes._records import text_of

__all__ = ["check_grounded", "check_no_unrun_query", "ungrounded_numbers"]

_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_SMALL = 100
_SQL_STATEMENT = re.compile(r"\bSELECT\b[\s\S]*?\bFROM\b")
_ASKS_FOR_SQL = re.compile(r"\b(sql|query|queries)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Number:
    literal: str
    value: float
    tolerance: float


def _numbers(text: str) -> list[_Number]:
    found = []
    for match in _NUMBER.finditer(text):
        literal = match.group(0)
        plain = literal.replace(",", "")
        decimals = len(plain.partition(".")[2])
        found.append(_Number(literal, float(plain), 0.5 * 10.0**-decimals + 1e-9))
    return found


def _values(text: str) -> list[float]:
    """The values of `_numbers(text)`, without the rest of each (the sources' numbers are
    only compared against: a run's tool results and system prompt hold hundreds)."""
    return [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)]


def ungrounded_numbers(answer: str, sources: Iterable[str]) -> list[str]:
    """The numbers of `answer` (as written) that no source supports, in order, once each."""
    known = [value for text in sources for value in _values(text)]
    missing: list[str] = []
    for number in _numbers(answer):
        if "." not in number.literal and abs(number.value) < _SMALL:
            continue
        if any(abs(number.value - value) <= number.tolerance for value in known):
            continue
        if number.literal not in missing:
            missing.append(number.literal)
    return missing


def _sum_example(messages: list[BaseMessage]) -> str:
    """`a + b + c` over the numbers of the last good tool result, when that makes sense."""
    for message in reversed(messages):
        if isinstance(message, ToolMessage) and message.status != "error":
            values = [
                n.literal.replace(",", "")
                for n in _numbers(text_of(message.content))
                if "." in n.literal or abs(n.value) >= _SMALL
            ]
            if 2 <= len(values) <= 12:
                expression = " + ".join(values)
                return f' For a total, call the calculator with {{"expression": "{expression}"}}.'
            return ""
    return ""


def check_grounded(
    answer: str,
    messages: Iterable[BaseMessage],
    system_prompt: str,
    extra_sources: Iterable[str] = (),
) -> None:
    """Raise `MalformedOutputError` naming the answer's unsupported numbers, if any.

    `extra_sources` are other texts the model was shown (the compose prompt's column sums).
    """
    history = list(messages)
    sources = [system_prompt, *extra_sources]
    sources += [text_of(m.content) for m in history if isinstance(m, ToolMessage | HumanMessage)]
    missing = ungrounded_numbers(answer, sources)
    if missing:
        raise MalformedOutputError(
            f"the numbers {', '.join(missing)} appear in no tool result. Do not estimate: "
            "compute them from the tool results with the calculator tool, or look them up."
            f"{_sum_example(history)} Then answer the whole question again, with every name "
            "and number it asks for, exactly as the results give them.",
            code=ErrorCode.UNGROUNDED_ANSWER,
        )


def check_no_unrun_query(answer: str, question: str, tool_names: Iterable[str]) -> None:
    """Raise `MalformedOutputError` when the answer quotes a SQL query instead of its result.

    The 1.5B local model answered "How many completed orders were there last month?" with the
    right query and "you can use the following SQL query" instead of calling `sql_query`.
    Not applied when the question itself asks about SQL or queries, or when no `sql_query`
    tool is bound.
    """
    if "sql_query" not in tool_names or _ASKS_FOR_SQL.search(question):
        return
    if _SQL_STATEMENT.search(answer):
        raise MalformedOutputError(
            "your answer contains a SQL query instead of its result. Run the query with the "
            "sql_query tool, then answer the question with the rows it returns."
        )

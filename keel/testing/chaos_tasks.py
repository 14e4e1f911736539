"""Tasks with known answers, and the policy the chaos server uses to solve them.

`arithmetic_tasks(n, seed)` makes calculator questions — one-step ("what is 17 * 23?") and
two-step ("compute 17 * 23, then add 40 to that result") — whose answers are computed here,
independently of any agent. `solve_task` is a `FunctionModel`-style policy that answers
them the way a competent model would: one calculator call per step, then the answer. It
reads only successful tool results, so an error observation (an unknown tool, a refused
call) makes it try the step again rather than derail.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from keel.testing.scripted import CallInfo, Reply

__all__ = ["Task", "arithmetic_tasks", "is_correct", "solve_task"]

_ONE = re.compile(r"what is (?P<a>[^?]+)\?", re.IGNORECASE)
_TWO = re.compile(r"compute (?P<a>.+?), then add (?P<b>-?\d+) to that result", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    question: str
    answer: str
    """The number the output must contain."""
    steps: int


def arithmetic_tasks(n: int, seed: int = 0) -> list[Task]:
    """`n` distinct calculator tasks, half of them two-step."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    while len(tasks) < n:
        a, b, c = rng.randint(11, 99), rng.randint(11, 99), rng.randint(10, 999)
        if len(tasks) % 2 == 0:
            question = f"Use the calculator: what is {a} * {b} + {c}?"
            tasks.append(Task(question, str(a * b + c), 1))
        else:
            question = f"Use the calculator to compute {a} * {b}, then add {c} to that result."
            tasks.append(Task(question, str(a * b + c), 2))
        if len({t.question for t in tasks}) != len(tasks):
            tasks.pop()
    return tasks


def is_correct(task: Task, output: str) -> bool:
    """The output states the task's answer (as a whole number, not inside a larger one)."""
    return re.search(rf"(?<![\d.]){re.escape(task.answer)}(?![\d])", output) is not None


def _results(messages: list[BaseMessage]) -> list[str]:
    """Successful tool results so far (error observations are skipped)."""
    return [
        str(m.content)
        for m in messages
        if isinstance(m, ToolMessage) and not str(m.content).startswith("Error")
    ]


def _call(expression: str, info: CallInfo) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[
            {"name": "calculator", "args": {"expression": expression}, "id": f"c{info.index}"}
        ],
    )


def solve_task(messages: list[BaseMessage], info: CallInfo) -> Reply:
    """The next reply for an `arithmetic_tasks` question (native tool calling)."""
    question = next((str(m.content) for m in messages if isinstance(m, HumanMessage)), "")
    results = _results(messages)
    two = _TWO.search(question)
    one = _ONE.search(question)
    if "calculator" not in info.tools:
        return "I cannot compute that reliably without the calculator."
    if two is not None:
        if not results:
            return _call(two["a"], info)
        if len(results) == 1:
            return _call(f"{results[0]} + {two['b']}", info)
        return f"The result is {results[-1]}."
    if one is not None:
        if not results:
            return _call(one["a"], info)
        return f"The answer is {results[-1]}."
    return "I can only do arithmetic tasks."

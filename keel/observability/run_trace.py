"""A thread's steps, read back from its checkpoints: what `keel trace` prints.

The rows are the `TraceStep`s the nodes wrote into the state, so they are exactly what
ran, and they survive the process (any saver, runs long finished). The checkpoint history
adds when each step was checkpointed.

```python
steps = await load_trace(graph, "thread-1")          # graph compiled with the saver
print(json.dumps(trace_to_json("thread-1", steps)))
render_table(steps, console)
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keel.errors import ThreadNotFoundError

__all__ = ["StepRow", "load_trace", "render_table", "trace_to_json"]

_TEXT = 80
"""Characters of thought, input and observation shown in the table (`--json` has all)."""


@dataclass(frozen=True)
class StepRow:
    """One step of a run, as `keel trace` shows it."""

    run_id: str | None
    iteration: int
    node: str
    thought: str | None
    action: str | None
    action_input: Any
    observation: str | None
    ms: float
    tokens: int
    cost: float
    signal: str | None
    attempt: int | None
    error_code: str | None
    at: str | None
    """When the checkpoint holding this step was written (ISO 8601, UTC)."""


async def load_trace(graph: Any, thread_id: str, *, run_id: str | None = None) -> list[StepRow]:
    """Every step on `thread_id` (or of one run), oldest first, from the checkpoints.

    `graph` is the compiled agent graph bound to the saver (no model is needed).
    """
    config = RunnableConfig(configurable={"thread_id": thread_id})
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    if not history:
        raise ThreadNotFoundError(f"no checkpoint for thread '{thread_id}'")
    rows: list[dict[str, Any]] = list((history[0].values or {}).get("trace") or [])
    times: list[str | None] = [None] * len(rows)
    seen = 0
    for snapshot in reversed(history):  # oldest first: a step's time is where it appeared
        count = min(len((snapshot.values or {}).get("trace") or []), len(rows))
        for i in range(seen, count):
            times[i] = snapshot.created_at
        seen = max(seen, count)
    steps = [_row(step, at) for step, at in zip(rows, times, strict=True)]
    if run_id is not None:
        steps = [s for s in steps if s.run_id == run_id]
        if not steps:
            raise ThreadNotFoundError(f"thread '{thread_id}' has no run '{run_id}'")
    return steps


def _row(step: dict[str, Any], at: str | None) -> StepRow:
    return StepRow(
        run_id=step.get("run_id"),
        iteration=int(step.get("iteration") or 0),
        node=str(step.get("node") or "?"),
        thought=step.get("thought"),
        action=step.get("action"),
        action_input=step.get("action_input"),
        observation=step.get("observation"),
        ms=float(step.get("ms") or 0.0),
        tokens=int(step.get("tokens") or 0),
        cost=float(step.get("cost") or 0.0),
        signal=step.get("signal"),
        attempt=step.get("attempt"),
        error_code=step.get("error_code"),
        at=at,
    )


def trace_to_json(thread_id: str, steps: list[StepRow]) -> dict[str, Any]:
    """`{"thread_id", "runs": [run ids, oldest first], "steps": [every field of each step]}`."""
    runs = list(dict.fromkeys(s.run_id for s in steps))
    return {"thread_id": thread_id, "runs": runs, "steps": [asdict(s) for s in steps]}


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= _TEXT else text[: _TEXT - 1] + "…"


def render_table(steps: list[StepRow], console: Console) -> None:
    """The steps as a table, one section per run, and a totals line per run."""
    runs = list(dict.fromkeys(s.run_id for s in steps))
    for run in runs:
        mine = [s for s in steps if s.run_id == run]
        table = Table(
            title=Text(f"run {run}") if len(runs) > 1 or run else None,
            title_justify="left",
            show_lines=False,
            header_style="bold",
        )
        for column, right in (
            ("#", True),
            ("node", False),
            ("thought", False),
            ("action", False),
            ("input", False),
            ("observation", False),
            ("ms", True),
            ("tokens", True),
            ("cost", True),
        ):
            table.add_column(column, justify="right" if right else "left", overflow="fold")
        for s in mine:
            note = f" [{s.signal}]" if s.signal in ("retry", "repair", "degrade") else ""
            observation = _short(s.observation)
            if s.error_code:
                observation = f"{s.error_code}: {observation}" if observation else s.error_code
            table.add_row(  # Text: model and tool output is shown as written, not as markup
                str(s.iteration),
                Text(s.node + note),
                Text(_short(s.thought)),
                Text(s.action or ""),
                Text(_short(s.action_input)),
                Text(observation),
                f"{s.ms:.0f}",
                str(s.tokens or ""),
                f"{s.cost:.6f}" if s.cost else "",
            )
        console.print(table)
        console.print(
            f"steps {len(mine)} · tokens {sum(s.tokens for s in mine)} · "
            f"cost ${sum(s.cost for s in mine):.6f} · "
            f"time {sum(s.ms for s in mine) / 1000:.2f}s",
            highlight=False,
        )

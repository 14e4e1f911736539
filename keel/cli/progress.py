"""The spinner `keel run`, `resume`, `approve` and `fork` show on a terminal.

It names the current step (node and tool), read from the run's own log events, so the
runtime needs no extra hook. Log lines still print, above the spinner and on lines of their
own: Keel's log stream is `sys.stderr` as it is at each write, which rich's live display
proxies while the spinner runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

from keel.types import RunResult

__all__ = ["Job", "run_with_spinner", "step_of"]

Job = Callable[[Callable[[str], None]], Coroutine[Any, Any, RunResult]]
"""A command's work: gets a `progress(message)` callback, returns the run's result."""


def step_of(event: Mapping[str, Any]) -> str | None:
    """What the run is doing now, from the event just logged (events follow each step)."""
    name = event.get("event")
    step = event.get("iteration")
    at = f"step {step + 1} · " if isinstance(step, int) else ""
    if name == "run.start":
        return "reason: thinking…"
    if name == "model.call":
        action = event.get("action")
        if event.get("signal") == "tools" and action:
            return f"{at}act: running {action}…"
        return f"{at}reason: {'answering' if event.get('signal') == 'answer' else 'thinking'}…"
    if name == "tool.call":
        return f"{at}reason: thinking over {event.get('tool')}'s result…"
    if name == "model.retry":
        return f"{at}reason: retrying the model ({event.get('error_code')})…"
    if name in ("run.degrade", "run.fallback"):
        return f"{at}fallback: {event.get('error_code')}…"
    return None


def run_with_spinner(job: Job, console: Console) -> RunResult:
    """Run `job` under a spinner on `console` that follows the run's steps."""
    from keel.observability.logs import listen

    with console.status("working…", spinner="dots") as status:

        def show(message: str) -> None:
            status.update(Text(message))  # literal: tool names and errors are not markup

        def on_event(event: Mapping[str, Any]) -> None:
            step = step_of(event)
            if step is not None:
                show(step)

        with listen(on_event):
            return asyncio.run(job(show))

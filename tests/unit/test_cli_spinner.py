"""On a terminal, `keel run`'s spinner names the current step and log lines print above it."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator

import pytest
import structlog
from rich.console import Console

from keel.cli.progress import run_with_spinner, step_of
from keel.config import ObservabilitySettings
from keel.errors import RunError
from keel.observability.logs import configure_logging, get_logger
from keel.types import RunResult

LOG_LINE = re.compile(
    r"(?:^|\n|\x1b\[[0-9;?]*[A-Za-z])\d{4}-\d\d-\d\dT[^\n]*\] (run\.start|model\.call)"
)
"""A log line that starts a screen line (after a newline or a cursor/erase sequence)."""


@pytest.fixture
def terminal() -> Iterator[tuple[Console, io.StringIO]]:
    """A 100-column terminal writing into a buffer; logs configured as `keel` does."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    screen = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="pretty"))  # stderr, as `keel` does
    yield Console(file=screen, force_terminal=True, width=100), screen
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def test_the_spinner_shows_the_step_and_logs_do_not_glue_to_it(
    terminal: tuple[Console, io.StringIO],
) -> None:
    console, screen = terminal

    async def job(progress: Callable[[str], None]) -> RunResult:
        progress("thinking…")
        log = get_logger()
        log.info("run.start", model="scripted:sales")
        log.info("model.call", signal="tools", action="sql_query", iteration=0)
        raise RunError("stop")

    with pytest.raises(RunError, match="stop"):
        run_with_spinner(job, console)
    shown = screen.getvalue()
    assert "step 1 · act: running sql_query…" in shown, shown
    assert [m.group(1) for m in LOG_LINE.finditer(shown)] == ["run.start", "model.call"], (
        "each log line starts a line of its own, above the spinner"
    )


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        ({"event": "run.start"}, "reason: thinking…"),
        (
            {"event": "model.call", "signal": "tools", "action": "calculator", "iteration": 1},
            "step 2 · act: running calculator…",
        ),
        ({"event": "tool.call", "tool": "calculator", "iteration": 1}, "step 2 · reason: "),
        ({"event": "run.fallback", "error_code": "model_error", "iteration": 0}, "step 1 · fall"),
        ({"event": "cache.hit"}, None),
    ],
)
def test_step_of_names_node_and_tool(event: dict[str, object], shown: str | None) -> None:
    step = step_of(event)
    if shown is None:
        assert step is None
    else:
        assert step is not None and step.startswith(shown)

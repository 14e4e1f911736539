"""What every `keel` command shares: the Typer app, the consoles, exit codes, running a job.

Exit codes: 0 the run succeeded; 1 the run ended in a clean failure (or an unexpected
error); 2 a usage or configuration error; 3 the run waits for a human; 4 the thread has no
checkpoint (nothing to resume, approve, fork or show). Failures print one line to stderr.

Text from users, models and tools is printed literally (`Text`, never rich markup): an
answer containing `[/b]` or `[bold]` is shown as written.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keel.errors import KeelError, ThreadNotFoundError, UsageError
from keel.observability.redact import redact

if TYPE_CHECKING:  # the settings (pydantic-settings) and the run load when a command runs
    from keel.cli.progress import Job
    from keel.config import Settings
    from keel.types import RunResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Keel: a production-grade agent runtime on LangGraph.",
)
out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Thread id to run on.")]


EXIT_NO_THREAD = 4
"""The thread has no checkpoint: a wrong id, or a run that stopped before its first one."""


def literal(text: str, label: str = "", style: str = "") -> Text:
    """`text` exactly as written (no markup, no emoji codes), after an optional styled label."""
    if not label:
        return Text(text)
    return Text.assemble((label, style), " ", text)


def fail(message: str, code: int) -> typer.Exit:
    err.print(literal(redact(message), "error:", "red"), soft_wrap=True)
    return typer.Exit(code)


def error_exit(exc: KeelError) -> typer.Exit:
    """A Keel error as one stderr line and its exit code (2 usage, 4 no checkpoint, else 1)."""
    if isinstance(exc, UsageError):
        code = 2
    elif isinstance(exc, ThreadNotFoundError):
        code = EXIT_NO_THREAD
    else:
        code = 1
    return fail(f"{exc.code}: {exc.message}", code)


def settings_from(**overrides: Any) -> Settings:
    from keel.config import load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except KeelError as exc:
        raise fail(exc.message, 2) from exc


def execute(job: Job, as_json: bool) -> None:
    """Run a job under a spinner and print its result; exit with the result's code.

    On a terminal the spinner names the current step (`keel.cli.progress`). The cyclic
    collector, off during a command's start-up (`keel.cli.main`), is on for the run, after
    one collection of start-up's garbage and `gc.freeze()` of what remains, as `keel serve`
    does (`keel.runtime.gc_tuning`): modules, classes, settings and the agent live to the end,
    so neither the run's full collections nor the interpreter's last one at exit traverse
    them again (issue 19: ~180 M instructions of a ~3.9 G `keel run`, ~200 M of it at exit).
    """
    from keel.cli.progress import run_with_spinner
    from keel.runtime.gc_tuning import freeze_startup_objects

    freeze_startup_objects()
    gc.enable()

    try:
        if as_json or not err.is_terminal:
            result = asyncio.run(job(lambda message: None))
        else:
            result = run_with_spinner(job, err)
    except KeelError as exc:
        raise error_exit(exc) from exc
    except KeyboardInterrupt as exc:
        raise fail("interrupted", 130) from exc
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        print_result(result)
    pending = result.metadata.pending
    if pending:  # a run waiting for a human: not a failure
        if not as_json:
            print_pending(pending, result.thread_id)
        raise typer.Exit(3)
    if not result.success:
        if not as_json:
            err.print(
                literal(f"{result.error_code}: {result.error}", "failed:", "red"), soft_wrap=True
            )
        raise typer.Exit(1)


def print_result(result: RunResult) -> None:
    """The answer on stdout; the steps' table and the totals on stderr.

    Every cell is `Text`: a plain string cell would go through Rich's markup and emoji
    rendering, which changes none of these (no `[` or `:name:` in them) but loads Rich's
    table of emoji codes.
    """
    out.print(literal(result.output), soft_wrap=True)
    meta = result.metadata
    table = Table(title=None, show_edge=False, header_style="bold dim")
    for column in ("#", "node", "tool", "ms", "tokens"):
        table.add_column(
            literal(column), justify="right" if column in ("#", "ms", "tokens") else "left"
        )
    for step in meta.trace:
        table.add_row(
            literal(str(step["iteration"])),
            literal(step["node"]),
            literal(step.get("action") or ""),
            literal(f"{step['ms']:.0f}"),
            literal(str(step.get("tokens") or "")),
        )
    err.print(table)
    err.print(
        literal(
            f"iterations {meta.iterations} · tokens {meta.total_tokens} · "
            f"cost ${meta.total_cost:.6f} · time {meta.execution_time:.2f}s · "
            f"thread {result.thread_id}"
        )
    )


def print_pending(requests: list[dict[str, Any]], thread: str) -> None:
    """Show what a paused run waits for, and how to answer."""
    for r in requests:
        err.print(literal(str(r["message"]), "waiting:", "yellow"), soft_wrap=True)
        err.print(
            literal(f"  {r['tool']}({json.dumps(r['arguments'])})  key {r['idempotency_key']}"),
            soft_wrap=True,
        )
        if r.get("error"):
            err.print(literal(f"  previous answer refused: {r['error']}"), soft_wrap=True)
    if requests:
        err.print(
            literal(f"  answer: keel approve --thread {thread} [--edit JSON | --reject REASON]"),
            soft_wrap=True,
        )

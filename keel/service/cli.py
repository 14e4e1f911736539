"""The `keel` command line: run, resume and list models.

Exit codes: 0 the run succeeded; 1 the run ended in a clean failure (or an unexpected
error); 2 a usage or configuration error; 3 the run waits for a human; 4 the thread has no
checkpoint (nothing to resume, approve, fork or show). Failures print one line to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.config import Settings, load_settings
from keel.errors import KeelError, ThreadNotFoundError, UsageError
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


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _error_exit(exc: KeelError) -> typer.Exit:
    """A Keel error as one stderr line and its exit code (2 usage, 4 no checkpoint, else 1)."""
    if isinstance(exc, UsageError):
        code = 2
    elif isinstance(exc, ThreadNotFoundError):
        code = EXIT_NO_THREAD
    else:
        code = 1
    return _fail(f"{exc.code}: {exc.message}", code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except KeelError as exc:
        raise _fail(exc.message, 2) from exc


Job = Callable[[Callable[[str], None]], Coroutine[Any, Any, RunResult]]


def _execute(job: Job, as_json: bool) -> None:
    """Run a job under a spinner and print its result; exit with the result's code."""
    try:
        if as_json or not err.is_terminal:
            result = asyncio.run(job(lambda message: None))
        else:
            with err.status("working…", spinner="dots") as status:
                result = asyncio.run(job(lambda message: status.update(message)))
    except KeelError as exc:
        raise _error_exit(exc) from exc
    except KeyboardInterrupt as exc:
        raise _fail("interrupted", 130) from exc
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        _print_result(result)
    pending = result.metadata.get("pending") or []
    if pending:  # a run waiting for a human: not a failure
        if not as_json:
            from keel.service._durable_cli import print_pending

            print_pending(pending, result.thread_id)
        raise typer.Exit(3)
    if not result.success:
        if not as_json:
            err.print(f"[red]failed:[/red] {result.error_code}: {result.error}", highlight=False)
        raise typer.Exit(1)


def _print_result(result: RunResult) -> None:
    out.print(result.output, highlight=False, soft_wrap=True)
    meta = result.metadata
    table = Table(title=None, show_edge=False, header_style="bold dim")
    for column in ("#", "node", "tool", "ms", "tokens"):
        table.add_column(column, justify="right" if column in ("#", "ms", "tokens") else "left")
    for step in meta.get("trace", []):
        table.add_row(
            str(step["iteration"]),
            step["node"],
            step.get("action") or "",
            f"{step['ms']:.0f}",
            str(step.get("tokens") or ""),
        )
    err.print(table)
    err.print(
        f"iterations {meta['iterations']} · tokens {meta['total_tokens']} · "
        f"cost ${meta['total_cost']:.6f} · time {meta['execution_time']:.2f}s · "
        f"thread {result.thread_id}",
        highlight=False,
    )


@app.command()
def run(
    question: Annotated[str, typer.Argument(help="What to ask the agent.")],
    as_json: JsonFlag = False,
    thread: ThreadOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model spec, e.g. openai:gpt-4o-mini.")
    ] = None,
) -> None:
    """Ask the agent a question and print the answer and its steps."""
    from keel.service.runner import open_agent

    settings = _settings(model=model)

    async def job(progress: Callable[[str], None]) -> RunResult:
        async with open_agent(settings, progress=progress) as agent:
            progress("thinking…")
            return await agent.arun(question, thread_id=thread)

    _execute(job, as_json)


@app.command()
def resume(
    thread: Annotated[str, typer.Option("--thread", help="Thread id of the run.")],
    as_json: JsonFlag = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Continue with another model (default: the one the run started with)."
        ),
    ] = None,
) -> None:
    """Continue a stopped or crashed run from its last checkpoint."""
    from keel.service.runner import open_agent, resume_settings

    base = _settings(model=model)

    async def job(progress: Callable[[str], None]) -> RunResult:
        settings = await resume_settings(base, thread, model=model)
        async with open_agent(settings, progress=progress) as agent:
            progress("resuming…")
            return await agent.aresume(thread)

    _execute(job, as_json)


@app.command()
def trace(
    thread: Annotated[str, typer.Option("--thread", help="Thread id of the run(s).")],
    as_json: JsonFlag = False,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run (default: every run).")
    ] = None,
) -> None:
    """Show a thread's steps from its checkpoints: node, thought, action, input, observation."""
    from checkpoints import open_saver
    from graphs import build_agent_graph
    from keel.observability.run_trace import load_trace, render_table, trace_to_json

    settings = _settings()

    async def job() -> Any:
        async with open_saver(settings.checkpoint_url) as saver:
            graph = build_agent_graph().compile(checkpointer=saver)
            return await load_trace(graph, thread, run_id=run_id)

    try:
        steps = asyncio.run(job())
    except KeelError as exc:
        raise _error_exit(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(trace_to_json(thread, steps), default=str) + "\n")
    else:
        render_table(steps, out)


@app.command("eval")
def eval_(
    tasks: Annotated[int, typer.Option("--tasks", min=1, max=1000, help="Tasks per system.")] = 50,
    rate: Annotated[
        float, typer.Option("--rate", min=0.0, max=1.0, help="Share of model requests faulted.")
    ] = 0.3,
    faults: Annotated[
        str | None,
        typer.Option("--faults", help="Fault kinds, comma-separated (default: the full mix)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Tasks and faults from this seed.")] = 7,
    price_as: Annotated[
        str, typer.Option("--price-as", help="Hosted model whose list price is charged.")
    ] = "gpt-4o-mini",
    as_json: JsonFlag = False,
) -> None:
    """Scorecard: Keel vs a plain LangGraph agent on the local chaos server (no network)."""
    from keel.service.scorecard import print_scorecard

    try:
        print_scorecard(tasks, rate, faults, seed, price_as, as_json, out)
    except KeelError as exc:
        raise _fail(f"{exc.code}: {exc.message}", 2) from exc


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the model specs Keel knows, whether they are installed, and their prices."""
    from keel.models.catalog import model_catalog

    rows = model_catalog(_settings())
    if as_json:
        sys.stdout.write(json.dumps([r.__dict__ for r in rows]) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("spec", "installed", "$/1M in", "$/1M out", "native tools", "note"):
        table.add_column(column, no_wrap=column == "spec")
    for r in rows:
        table.add_row(
            r.spec,
            "yes" if r.installed else "no",
            f"{r.input_per_1m:g}",
            f"{r.output_per_1m:g}",
            "yes" if r.native_tools else "no",
            r.note,
        )
    out.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
) -> None:
    """Serve the HTTP API (the LangGraph Agent Server protocol) with runs in-process."""
    from keel.service.api.admin import serve as serve_api

    serve_api(_settings(), host=host, port=port)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=512, help="Runs executed at once.")
    ] = 4,
) -> None:
    """Execute queued runs (KEEL_SERVICE__QUEUE=procrastinate) from the service's Postgres."""
    from keel.service.api.worker import run_worker
    from keel.service.gc_tuning import freeze_startup_objects, tune_gc

    settings = _settings()
    tune_gc(settings.service.gc_gen0_threshold)
    freeze_startup_objects()
    try:
        asyncio.run(run_worker(settings, concurrency=concurrency))
    except KeelError as exc:
        raise _fail(exc.message, 2) from exc
    except KeyboardInterrupt:
        pass


keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys (stored hashed).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    role: Annotated[str, typer.Option("--role", help="Role: picks the tools runs may use.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from keel.service.api.admin import create_key

    try:
        made = asyncio.run(create_key(_settings(), tenant, role))
    except KeelError as exc:
        raise _fail(exc.message, 2) from exc
    if as_json:
        sys.stdout.write(json.dumps(made) + "\n")
    else:
        out.print(made["api_key"], highlight=False)
        err.print(f"key {made['key_id']} · tenant {tenant} · role {role}", highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key by its id."""
    from keel.service.api.admin import revoke_key

    if not asyncio.run(revoke_key(_settings(), key_id)):
        raise _fail(f"no live key with id {key_id}", 1)


from keel.service import _durable_cli  # noqa: E402, F401  (approve, history, fork, checkpoints)


def _logs_to_stderr() -> None:
    """Log lines go to stderr (JSON unless a terminal) so stdout stays the answer or JSON."""
    import os

    from keel.config import ObservabilitySettings
    from keel.observability.logs import configure_logging

    langsmith_key = os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")
    secrets = (langsmith_key,) if langsmith_key else ()
    try:
        settings: Settings | ObservabilitySettings = load_settings()
    except KeelError:
        settings = ObservabilitySettings()  # the command itself reports the bad setting
    configure_logging(settings, stream=sys.stderr, secrets=secrets)


def main() -> None:
    _logs_to_stderr()
    app()

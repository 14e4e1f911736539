"""`keel run`, `resume`, `trace`, `eval`, `models`, `serve`, `worker`, `sql-role` and `keys`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import (
    JsonFlag,
    ThreadOpt,
    app,
    err,
    error_exit,
    execute,
    fail,
    literal,
    out,
    settings_from,
)
from keel.cli.project import (
    AgentOpt,
    ConfigOpt,
    entry_from,
    keel_agent_from,
    project_from,
    run_plain_graph,
)
from keel.errors import KeelError
from keel.types import RunResult


@app.command()
def run(
    question: Annotated[str, typer.Argument(help="What to ask the agent.")],
    as_json: JsonFlag = False,
    thread: ThreadOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model spec, e.g. openai:gpt-4o-mini.")
    ] = None,
    agent: AgentOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ask an agent (or any graph of the project) a question and print the answer."""
    from keel.runtime import open_agent

    project = project_from(config, notes=False)  # first: its `env` is set before the settings
    entry = entry_from(project, agent)
    settings = settings_from(model=model)
    if entry.kind != "keel":
        if model is not None:
            raise fail(f"--model applies to Keel agents; '{entry.graph_id}' is a {entry.kind}", 2)
        run_plain_graph(entry, settings, question, thread, as_json)
        return
    definition = entry.agent
    assert definition is not None  # a "keel" entry holds its definition
    if model is not None:
        try:
            definition = definition.with_config({"model": model})
        except KeelError as exc:
            raise fail(exc.message, 2) from exc

    async def job(progress: Callable[[str], None]) -> RunResult:
        async with open_agent(definition, settings=settings, progress=progress) as bound:
            progress("thinking…")
            return await bound.arun(question, thread_id=thread)

    execute(job, as_json)


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
    agent: AgentOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Continue a stopped or crashed run from its last checkpoint."""
    from keel.runtime import open_agent, resume_settings

    definition = keel_agent_from(config, agent, "resume")
    base = settings_from(model=model)

    async def job(progress: Callable[[str], None]) -> RunResult:
        settings = await resume_settings(base, thread, model=model)
        async with open_agent(definition, settings=settings, progress=progress) as agent:
            progress("resuming…")
            return await agent.aresume(thread)

    execute(job, as_json)


@app.command()
def trace(
    thread: Annotated[str, typer.Option("--thread", help="Thread id of the run(s).")],
    as_json: JsonFlag = False,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run (default: every run).")
    ] = None,
) -> None:
    """Show a thread's steps from its checkpoints: node, thought, action, input, observation."""
    from keel.checkpoints import open_saver
    from keel.graphs import build_agent_graph
    from keel.observability.run_trace import load_trace, render_table, trace_to_json

    settings = settings_from()

    async def job() -> Any:
        async with open_saver(settings.checkpoint_url) as saver:
            graph = build_agent_graph().compile(checkpointer=saver)
            return await load_trace(graph, thread, run_id=run_id)

    try:
        steps = asyncio.run(job())
    except KeelError as exc:
        raise error_exit(exc) from exc
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
    workloads: Annotated[
        bool,
        typer.Option(
            "--workloads",
            help="Instead: each workload's eval (report_writer, ticket_desk, code_reviewer).",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", help="With --workloads: the model (default: each scripted one)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Scorecard: Keel vs a plain LangGraph agent on the local chaos server (no network)."""
    if workloads:
        _eval_workloads(model, price_as, as_json)
        return
    import importlib.util

    missing = [m for m in ("aiohttp", "langchain") if importlib.util.find_spec(m) is None]
    if missing:  # the dev extra: the chaos server and langchain's create_agent
        raise fail(
            f"keel eval needs the test tools ({', '.join(missing)} missing): "
            "make install-dev, or pip install -e '.[dev]'",
            2,
        )
    from keel.evals.scorecard import print_scorecard

    try:
        print_scorecard(tasks, rate, faults, seed, price_as, as_json, out)
    except KeelError as exc:
        raise fail(f"{exc.code}: {exc.message}", 2) from exc


def _eval_workloads(model: str | None, price_as: str, as_json: bool) -> None:
    """`keel eval --workloads`: a row per workload, checked against its own data."""
    from dataclasses import asdict

    from rich.text import Text

    from keel.evals.workloads import run_workload_evals

    try:
        results = asyncio.run(run_workload_evals(model=model, price_as=price_as))
    except KeelError as exc:
        raise error_exit(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps([asdict(r) for r in results]) + "\n")
    else:
        table = Table(title=f"workload evals (cost at {price_as} prices)", show_edge=False)
        for column in ("workload", "model", "runs", "success", "P50 s", "P99 s", "$/run"):
            table.add_column(column, justify="left" if column in ("workload", "model") else "right")
        for r in results:
            table.add_row(
                Text(r.workload),
                Text(r.model),
                str(r.runs),
                f"{r.success:.0%}",
                f"{r.p50_s:.2f}",
                f"{r.p99_s:.2f}",
                f"{r.cost_per_run_usd:.5f}",
            )
        out.print(table)
        for r in results:
            for failure in r.failures:
                err.print(Text(f"{r.workload} failed: {failure}"))
    if any(r.success < 1 for r in results):
        raise typer.Exit(1)


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the model specs Keel knows, whether they are installed, and their prices."""
    from keel.models.catalog import model_catalog

    rows = model_catalog(settings_from())
    if as_json:
        sys.stdout.write(json.dumps([r.__dict__ for r in rows]) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("spec", "installed", "$/1M in", "$/1M out", "native tools", "note"):
        table.add_column(column, no_wrap=column == "spec")
    for r in rows:
        table.add_row(
            literal(r.spec),
            "yes" if r.installed else "no",
            f"{r.input_per_1m:g}",
            f"{r.output_per_1m:g}",
            "yes" if r.native_tools else "no",
            literal(r.note),
        )
    out.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the project's graphs over HTTP (the LangGraph Agent Server protocol)."""
    from keel.server.admin import serve as serve_api

    project = project_from(config)
    serve_api(settings_from(), host=host, port=port, project=project)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=512, help="Runs executed at once.")
    ] = 4,
    config: ConfigOpt = None,
) -> None:
    """Execute queued runs (KEEL_SERVICE__QUEUE=procrastinate) from the service's Postgres."""
    from keel.runtime.gc_tuning import freeze_startup_objects, tune_gc
    from keel.server.worker import run_worker

    project = project_from(config)
    settings = settings_from()
    tune_gc(settings.service.gc_gen0_threshold)
    freeze_startup_objects()
    try:
        asyncio.run(run_worker(settings, concurrency=concurrency, project=project))
    except KeelError as exc:
        raise fail(exc.message, 2) from exc
    except KeyboardInterrupt:
        pass


@app.command("sql-role")
def sql_role(
    admin_url: Annotated[str, typer.Option("--admin-url", help="Postgres URL that may grant.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, envvar="KEEL_SQL_ROLE_PASSWORD")
    ],
    role: Annotated[str, typer.Option("--role", help="Role to create or reset.")] = "keel_reader",
) -> None:
    """Create the least-privilege role the sql_query tool connects as (SELECT on its tables)."""
    from keel.tools.sql_role import create_readonly_role

    tables = settings_from().sql.allowed_tables
    try:
        create_readonly_role(admin_url, role, password, tables)
    except Exception as exc:  # psycopg errors: bad URL, no right to grant, unknown table
        raise fail(f"could not create role {role}: {exc}", 2) from exc
    err.print(f"role {role} may read {', '.join(tables)}; set KEEL_DATABASE_URL to connect as it")


keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys (stored hashed).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    role: Annotated[str, typer.Option("--role", help="Role: picks the tools runs may use.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from keel.server.admin import create_key

    try:
        made = asyncio.run(create_key(settings_from(), tenant, role))
    except KeelError as exc:
        raise fail(exc.message, 2) from exc
    if as_json:
        sys.stdout.write(json.dumps(made) + "\n")
    else:
        out.print(literal(made["api_key"]), soft_wrap=True)
        err.print(literal(f"key {made['key_id']} · tenant {tenant} · role {role}"))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key by its id."""
    from keel.server.admin import revoke_key

    if not asyncio.run(revoke_key(settings_from(), key_id)):
        raise fail(f"no live key with id {key_id}", 1)

"""`keel approve`, `keel history`, `keel fork` and `keel checkpoints prune`.

Registered on the shared `keel` app (`keel.cli._common`) when `keel.cli` imports it.
Thin: parse, open the agent, call the `Agent` durability API, print.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import (
    JsonFlag,
    app,
    error_exit,
    execute,
    fail,
    literal,
    out,
    settings_from,
)
from keel.cli.project import AgentOpt, ConfigOpt, keel_agent_from
from keel.errors import KeelError
from keel.types import RunResult

if TYPE_CHECKING:
    from keel.agents import Agent

ThreadReq = Annotated[str, typer.Option("--thread", help="Thread id of the run.")]
checkpoints_app = typer.Typer(no_args_is_help=True, help="Manage stored checkpoints.")
app.add_typer(checkpoints_app, name="checkpoints")


def _json_object(raw: str | None, flag: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise fail(f"{flag}: not valid JSON: {exc}", 2) from exc
    if not isinstance(value, dict):
        raise fail(f"{flag}: expected a JSON object, got {type(value).__name__}", 2)
    return value


async def _resume_agent(thread: str, progress: Callable[[str], None], definition: Agent) -> Any:
    from keel.runtime import open_agent, resume_settings

    settings = await resume_settings(settings_from(), thread)
    return open_agent(definition, settings=settings, progress=progress)


@app.command()
def approve(
    thread: ThreadReq,
    edit: Annotated[
        str | None, typer.Option("--edit", help="Run the call with these arguments (JSON).")
    ] = None,
    reject: Annotated[
        str | None, typer.Option("--reject", help="Do not run it; the reason goes to the model.")
    ] = None,
    as_json: JsonFlag = False,
    agent: AgentOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Answer a run waiting for a human: approve the call, edit its arguments, or reject it."""
    if edit is not None and reject is not None:
        raise fail("give --edit or --reject, not both", 2)
    arguments = _json_object(edit, "--edit")
    definition = keel_agent_from(config, agent, "approve")

    async def job(progress: Callable[[str], None]) -> RunResult:
        async with await _resume_agent(thread, progress, definition) as agent:
            progress("continuing…")
            return await agent.aapprove(thread, edit=arguments, reject=reject)

    execute(job, as_json)


@app.command()
def history(
    thread: ThreadReq,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Print the full state at this checkpoint.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    as_json: JsonFlag = False,
    agent: AgentOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List a thread's checkpoints (newest first), or print the state at one of them."""
    from keel.runtime import open_agent

    definition = keel_agent_from(config, agent, "history")
    settings = settings_from()

    async def job() -> Any:
        async with open_agent(definition, settings=settings) as agent:
            if checkpoint is not None:
                return await agent.astate(thread, checkpoint)
            return await agent.ahistory(thread, limit=limit)

    found = _run(job)
    if checkpoint is not None:
        sys.stdout.write(json.dumps(_plain(found), default=str, indent=None if as_json else 2))
        sys.stdout.write("\n")
        return
    if as_json:
        sys.stdout.write(json.dumps([asdict(c) for c in found]) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("checkpoint", "step", "source", "next", "created", "last message"):
        table.add_column(column, no_wrap=column == "checkpoint")
    for c in found:
        table.add_row(
            literal(c.checkpoint_id),
            str(c.step),
            literal(c.source),
            literal(", ".join(c.next)),
            literal((c.created_at or "")[:19]),
            literal(c.last_message),
        )
    out.print(table)


@app.command()
def fork(
    thread: ThreadReq,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Branch at this checkpoint.")],
    values: Annotated[
        str | None,
        typer.Option("--set", help='State changes as JSON, e.g. \'{"question": "…"}\'.'),
    ] = None,
    as_node: Annotated[
        str | None, typer.Option("--as-node", help="Apply the changes as if this node made them.")
    ] = None,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run on from the fork.")] = True,
    as_json: JsonFlag = False,
    agent: AgentOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Branch a thread at a checkpoint, optionally with edited state, and run on."""
    changes = _json_object(values, "--set")
    definition = keel_agent_from(config, agent, "fork")

    async def job(progress: Callable[[str], None]) -> RunResult:
        async with await _resume_agent(thread, progress, definition) as agent:
            progress("forking…")
            return await agent.afork(thread, checkpoint, values=changes, as_node=as_node, run=run)

    execute(job, as_json)


@checkpoints_app.command("prune")
def prune(
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", min=1, help="Checkpoints kept per thread.")
    ] = None,
    idle_days: Annotated[
        float | None,
        typer.Option("--idle-days", min=0, help="Drop threads idle longer than this."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete old checkpoints: keep the last K per thread, drop threads idle for T days."""
    from keel.checkpoints import open_storage
    from keel.checkpoints.retention import RetentionPolicy
    from keel.checkpoints.retention import prune as prune_store

    if keep_last is None and idle_days is None:
        raise fail("give --keep-last and/or --idle-days", 2)
    settings = settings_from()
    policy = RetentionPolicy(
        keep_last=keep_last, idle_s=None if idle_days is None else idle_days * 86400
    )

    async def job() -> Any:
        import time

        async with open_storage(settings.checkpoint_url, settings.checkpoint_pool) as storage:
            return await prune_store(storage, policy, now=time.time())

    report = _run(job)
    if as_json:
        sys.stdout.write(json.dumps(asdict(report)) + "\n")
    else:
        out.print(
            f"dropped {report.threads_dropped} idle threads, deleted "
            f"{report.checkpoints_deleted} checkpoints and {report.journal_rows_deleted} "
            "journal rows",
            highlight=False,
        )


def _run(job: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(job())
    except KeelError as exc:
        raise error_exit(exc) from exc


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """State values as JSON-ready data (messages as role/content/tool calls)."""
    plain = dict(values)
    plain["messages"] = [
        {
            "type": m.type,
            "id": m.id,
            "content": m.content,
            **({"tool_calls": m.tool_calls} if getattr(m, "tool_calls", None) else {}),
        }
        for m in values.get("messages", [])
    ]
    return plain

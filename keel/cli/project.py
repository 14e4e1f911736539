"""`keel agents` and running a plain LangGraph graph from the project (`keel run --agent`).

The project is loaded before the settings, so the `env` of `langgraph.json` is in place when
the settings read the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from keel.cli._common import JsonFlag, app, err, error_exit, fail, literal, out
from keel.errors import KeelError

__all__ = [
    "AgentOpt",
    "ConfigOpt",
    "entry_from",
    "keel_agent_from",
    "project_from",
    "run_plain_graph",
]

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The langgraph.json to read (default: ./langgraph.json if there is one, else the "
        "built-in data assistant).",
    ),
]

AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent",
        help="Graph id from langgraph.json (default: its first Keel agent; without a file, "
        "the built-in data assistant).",
    ),
]

if TYPE_CHECKING:  # the project package imports langgraph: loaded only by the commands
    from keel.agents import Agent
    from keel.config import Settings
    from keel.project import GraphEntry, Project


def project_from(config: Path | None, *, notes: bool = True) -> Project:
    """The project, or exit 2 with the file, key and fix; its notes go to stderr.

    Logging was configured before the project's `env` was read; when that `env` sets a
    `KEEL_OBSERVABILITY__*` variable (the log level or format, say), it is configured again."""
    from keel.project import load_project

    before = _logging_variables()
    try:
        project = load_project(config)
    except KeelError as exc:
        raise fail(exc.message, 2) from exc
    if _logging_variables() != before:
        from keel.cli import _logs_to_stderr

        _logs_to_stderr()
    for note in project.notes if notes else ():
        err.print(literal(note, "note:", "yellow"), soft_wrap=True)
    return project


def _logging_variables() -> dict[str, str]:
    """The environment variables that configure logging (`KEEL_OBSERVABILITY__*`)."""
    return {k: v for k, v in os.environ.items() if k.upper().startswith("KEEL_OBSERVABILITY__")}


def entry_from(project: Project, graph_id: str | None) -> GraphEntry:
    try:
        return project.get(graph_id)
    except KeelError as exc:
        raise fail(exc.message, 2) from exc


def keel_agent_from(config: Path | None, graph_id: str | None, command: str) -> Agent:
    """The Keel agent definition a thread command (resume, approve, fork, history) opens."""
    entry = entry_from(project_from(config, notes=False), graph_id)
    if entry.agent is None:
        raise fail(
            f"keel {command} works on Keel agents; '{entry.graph_id}' is a {entry.kind} "
            f"(continue it with `keel run --agent {entry.graph_id} --thread ID`)",
            2,
        )
    return entry.agent


@app.command()
def agents(config: ConfigOpt = None, as_json: JsonFlag = False) -> None:
    """List the project's graphs: id, kind (keel, graph, factory), source and description
    (with --json, a Keel agent's model and tools too)."""
    project = project_from(config)
    rows: list[dict[str, Any]] = [
        {
            "graph_id": e.graph_id,
            "kind": e.kind,
            "source": e.source,
            "description": e.description,
            "default": e is project.default,
            # a Keel agent's own choices (model None: the settings' KEEL_MODEL)
            **(
                {"model": e.agent.model, "tools": list(e.agent.registry().names())}
                if e.agent is not None
                else {}
            ),
        }
        for e in project.graphs.values()
    ]
    if as_json:
        where = str(project.path) if project.path else None
        sys.stdout.write(json.dumps({"config": where, "graphs": rows}) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("graph id", "kind", "source", "description"):
        table.add_column(column, no_wrap=column != "description")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        table.add_row(
            literal(row["graph_id"] + mark),
            row["kind"],
            literal(row["source"]),
            literal(row["description"]),
        )
    out.print(table)
    err.print(literal(f"from {project.path or 'the built-in project (no langgraph.json)'}"))


@asynccontextmanager
async def _graph_for(entry: GraphEntry, config: Any) -> Any:
    from keel.project import open_factory_graph

    if entry.kind == "factory":
        async with open_factory_graph(entry, config) as graph:
            yield graph
    else:
        yield entry.graph


def _text(message: Any) -> str:
    text = getattr(message, "text", None)
    if isinstance(text, str):
        return text
    return str(getattr(message, "content", message))


async def _run_graph(
    entry: GraphEntry, settings: Settings, question: str, thread_id: str
) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableConfig

    from keel.checkpoints import open_saver

    config = RunnableConfig(configurable={"thread_id": thread_id})
    async with open_saver(settings.checkpoint_url) as saver, _graph_for(entry, config) as graph:
        bound = graph.copy(update={"checkpointer": saver})
        values = await bound.ainvoke({"messages": [HumanMessage(question)]}, config)
        state = await bound.aget_state(config)
    messages = values.get("messages") if isinstance(values, dict) else None
    output = _text(messages[-1]) if messages else json.dumps(values, default=str)
    return {
        "graph_id": entry.graph_id,
        "thread_id": thread_id,
        "output": output,
        "interrupts": [
            {"id": i.id, "value": i.value} for i in getattr(state, "interrupts", ()) or ()
        ],
        "next": list(state.next),
    }


def run_plain_graph(
    entry: GraphEntry, settings: Settings, question: str, thread: str | None, as_json: bool
) -> None:
    """Run a LangGraph graph on `{"messages": [HumanMessage(question)]}` with Keel's
    checkpointer and print the last message's text; exit 3 when it waits at an interrupt."""
    if not question.strip():
        raise fail("the question is empty", 2)
    try:
        result = asyncio.run(_run_graph(entry, settings, question, thread or uuid.uuid4().hex))
    except KeelError as exc:
        raise error_exit(exc) from exc
    except KeyboardInterrupt as exc:
        raise fail("interrupted", 130) from exc
    except Exception as exc:  # the user's graph failed: one line, not a traceback
        raise fail(f"graph '{entry.graph_id}' failed: {type(exc).__name__}: {exc}", 1) from exc
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        out.print(literal(result["output"]), soft_wrap=True)
        err.print(literal(f"graph {entry.graph_id} · thread {result['thread_id']}"))
    if result["interrupts"] or result["next"]:
        if not as_json:
            for interrupt in result["interrupts"]:
                err.print(
                    literal(json.dumps(interrupt["value"], default=str), "waiting:", "yellow"),
                    soft_wrap=True,
                )
        raise typer.Exit(3)

"""`keel artifacts list` and `keel artifacts get`: the files agents stored (reports, charts).

Registered on the shared `keel` app (`keel.cli._common`) when `keel.cli` imports it. Reads
the configured store (`KEEL_ARTIFACTS__URL`, else `<home>/artifacts`) for one tenant
(`--tenant`, `default` as `keel run` uses).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keel.artifacts import MAX_LIST, open_artifact_store
from keel.cli._common import JsonFlag, app, error_exit, fail, literal, out, settings_from
from keel.errors import KeelError

artifacts_app = typer.Typer(no_args_is_help=True, help="List and fetch stored artifacts.")

TenantOpt = Annotated[
    str, typer.Option("--tenant", help="Tenant whose artifacts to read (keel run uses default).")
]


@artifacts_app.command("list")
def list_artifacts(
    thread: Annotated[
        str | None, typer.Option("--thread", help="Only the artifacts of this thread.")
    ] = None,
    tenant: TenantOpt = "default",
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIST)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List stored artifacts, newest first."""
    try:
        store = open_artifact_store(settings_from())
        found = asyncio.run(store.list(tenant, thread_id=thread, limit=limit))
    except KeelError as exc:
        raise error_exit(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps([a.to_json() for a in found]) + "\n")
        return
    if not found:
        out.print(literal("no artifacts" + (f" in thread {thread}" if thread else "")))
        return
    table = Table(show_edge=False, header_style="bold dim")
    table.add_column("id", no_wrap=True)
    for column in ("name", "type", "bytes", "thread", "created"):
        table.add_column(column, overflow="fold")
    for a in found:
        table.add_row(
            a.id, a.name, a.content_type, str(a.size), a.thread_id, a.created_at[:19] + "Z"
        )
    out.print(table)


@artifacts_app.command("get")
def get_artifact(
    artifact_id: Annotated[str, typer.Argument(help="The artifact's id (art_…).")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the bytes to this file (default: stdout)."),
    ] = None,
    tenant: TenantOpt = "default",
) -> None:
    """Write an artifact's bytes to a file or to stdout."""
    try:
        store = open_artifact_store(settings_from())
        found = asyncio.run(store.get(tenant, artifact_id))
    except KeelError as exc:
        raise error_exit(exc) from exc
    if found is None:
        raise fail(f"no artifact {artifact_id} for tenant {tenant}", 4)
    artifact, data = found
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc}", 1) from exc
    out.print(literal(f"{artifact.name} ({artifact.content_type}, {artifact.size} bytes)"))


app.add_typer(artifacts_app, name="artifacts")

"""A run over HTTP meets a Postgres outage mid-run and still ends `success`, as a run from
Python does: the HTTP API executes runs through the same driver (outage retry), and the API
process retries its run-status writes through the outage."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage
from langgraph_sdk import get_client

from keel.config import Settings
from keel.testing.scripted import ScriptedModel
from keel.tools.registry import ToolRegistry, tool
from tests.conftest import PG_ADMIN_URL, fresh_database
from tests.integration.service_server import running_server

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A database only this test uses, so cutting it off touches nothing else."""
    with fresh_database("keel_http_outage") as (url, name):
        try:
            yield (url, name)
        finally:
            _allow_connections(name, True)


def _allow_connections(dbname: str, allowed: bool) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def _terminate_all(dbname: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def _outage_tool(dbname: str, *, down_s: float, terminated: list[int]) -> ToolRegistry:
    """A `book` tool that, the first time it runs, cuts the database off: every backend is
    terminated and new connections are refused for `down_s` seconds."""

    @tool(idempotent=True)
    def book(room: str) -> str:
        """Book a room; the database goes away while it runs."""
        if not terminated:
            if down_s:
                _allow_connections(dbname, False)
                threading.Timer(down_s, _allow_connections, (dbname, True)).start()
            terminated.append(_terminate_all(dbname))
        return f"room {room} booked"

    return ToolRegistry.of([book])


def _model() -> Any:
    call = {"name": "book", "args": {"room": "7"}, "id": "b1"}
    return ScriptedModel([AIMessage(content="", tool_calls=[call]), "Room 7 is booked."])


async def _run_over_http(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with get_client(url=url, api_key=None) as client:
        thread = await client.threads.create()
        values = await client.runs.wait(
            thread["thread_id"],
            "agent",
            input={"messages": [{"role": "user", "content": "book room 7"}]},
        )
        runs = await client.runs.list(thread["thread_id"])
        assert len(runs) == 1
        return runs[0], values  # type: ignore[return-value]


@pytest.mark.parametrize("service_db", ["sqlite", "postgres"])
async def test_http_run_survives_terminated_checkpoint_connections(
    own_database: tuple[str, str],
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    service_db: str,
) -> None:
    """Every backend of the database is terminated while the run's tool runs. `sqlite`:
    only the checkpoint connections die (the driver's outage retry); `postgres`: the run
    records live there too (the store's write retry)."""
    url, dbname = own_database
    terminated: list[int] = []
    service = (
        {"db_url": f"sqlite:///{tmp_path / 'service.sqlite'}"} if service_db == "sqlite" else {}
    )
    settings = settings_factory(
        checkpoint_url=url,
        checkpoint_pool={"health_check": False, "max_size": 4},
        service=service,
    )
    registry = _outage_tool(dbname, down_s=0, terminated=terminated)
    with running_server(settings, model=_model(), tools=registry) as server:
        run, values = await _run_over_http(server)
    assert terminated and terminated[0] >= 1, "the backends really were terminated"
    assert run["status"] == "success", run
    assert values["outcome"]["output"] == "Room 7 is booked."


async def test_http_run_survives_a_database_outage_of_seconds(
    own_database: tuple[str, str], settings_factory: Callable[..., Settings]
) -> None:
    """The database refuses every connection for 3 s mid-run (checkpoints and run records
    both on it): the accepted run waits the outage out and ends `success`."""
    url, dbname = own_database
    terminated: list[int] = []
    settings = settings_factory(
        checkpoint_url=url, checkpoint_pool={"health_check": False, "max_size": 4}
    )
    registry = _outage_tool(dbname, down_s=3.0, terminated=terminated)
    with running_server(settings, model=_model(), tools=registry) as server:
        run, values = await _run_over_http(server)
    assert terminated and terminated[0] >= 1, "the backends really were terminated"
    assert run["status"] == "success", run
    assert values["outcome"]["output"] == "Room 7 is booked."

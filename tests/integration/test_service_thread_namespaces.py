"""Thread ids are per tenant (issue 18, item 15): a tenant may create a thread of an id another
tenant holds, gets a thread of its own, and never sees, runs on or touches the other's; every
route answers another tenant's id exactly as an id nobody has; a database made before thread
ids were per tenant still serves its threads. On SQLite and Postgres, through the SDK."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from alembic import command
from alembic.config import Config
from langgraph_sdk import get_client
from sqlalchemy import create_engine, text

from keel.config import Settings
from keel.runtime import open_agent
from keel.server.admin import create_key
from keel.server.store import service_db_url
from tests.conftest import fresh_database
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

USER: dict[str, Any] = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
_MIGRATIONS = Path(__file__).parents[2] / "keel" / "server" / "migrations"


@pytest.fixture(params=["sqlite", "postgres"])
def secured_on(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[Settings]:
    """Settings of a server that requires API keys, its tables and checkpoints on SQLite or
    on a fresh Postgres database."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            checkpoint_url = f"sqlite:///{tmp_path / 'cp.sqlite'}"
        else:
            checkpoint_url, _ = stack.enter_context(fresh_database("keel_namespaces"))
        yield settings_factory(
            model="scripted:sales",
            checkpoint_url=checkpoint_url,
            service={"require_api_key": True},
        )


def _client(url: str, api_key: str) -> Any:
    """An SDK client; its answers are read here as the JSON they are."""
    return get_client(url=url, api_key=api_key)


def _ids(items: list[dict[str, Any]], key: str) -> list[str]:
    return [str(i[key]) for i in items]


async def test_two_tenants_each_have_their_own_thread_of_one_id(secured_on: Settings) -> None:
    acme = (await create_key(secured_on, "acme", "member"))["api_key"]
    globex = (await create_key(secured_on, "globex", "member"))["api_key"]
    with running_server(secured_on) as url:
        await _two_tenants_on_one_id(url, acme, globex)


async def test_two_tenants_on_one_id_on_workers(
    settings_factory: Callable[..., Settings],
    distributed: dict[str, Any],
    queue_db: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """The same on `keel worker`s: the queue's locks, the fence and the Redis stream events
    go by the thread's key."""
    settings = settings_factory(
        model="scripted:sales",
        checkpoint_url=queue_db,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        service={"queue": "procrastinate", "require_api_key": True},
    )
    acme = (await create_key(settings, "acme", "member"))["api_key"]
    globex = (await create_key(settings, "globex", "member"))["api_key"]
    with running_server(settings) as url, workers(distributed, 1, 2):
        await _two_tenants_on_one_id(url, acme, globex)


async def _two_tenants_on_one_id(url: str, acme: str, globex: str) -> None:
    tid = f"shared-{uuid.uuid4().hex[:6]}"
    async with (
        _client(url, acme) as a,
        _client(url, globex) as g,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}) as g_http,
    ):
        mine = await a.threads.create(thread_id=tid, metadata={"owner": "acme"})
        a_run = await a.runs.create(tid, "agent", input=USER)
        await a.runs.join(tid, a_run["run_id"])
        a_state = await a.threads.get_state(tid)
        a_history = await a.threads.get_history(tid, limit=100)
        assert a_state["values"]["tenant"] == "acme"

        # globex creates the id as it would any fresh one: same status, its own thread
        fresh = await g_http.post("/threads", json={"thread_id": f"fresh-{tid}"})
        taken = await g_http.post("/threads", json={"thread_id": tid, "metadata": {"x": 1}})
        assert taken.status_code == fresh.status_code == 200
        theirs = taken.json()
        assert theirs["thread_id"] == tid and theirs["values"] == {}
        assert theirs["metadata"]["x"] == 1 and "owner" not in theirs["metadata"]
        assert theirs["created_at"] != mine["created_at"]
        assert (await g.threads.get_state(tid))["values"] == {}
        assert await g.threads.get_history(tid) == []
        assert await g.runs.list(tid) == []
        # …and creating it again is its own 409, as for any thread of its own
        again = await g_http.post("/threads", json={"thread_id": tid})
        own_again = await g_http.post("/threads", json={"thread_id": f"fresh-{tid}"})
        assert again.status_code == own_again.status_code == 409

        # globex's run on the id runs on globex's thread only
        g_run = await g.runs.create(tid, "agent", input=USER)
        await g.runs.join(tid, g_run["run_id"])
        g_state = await g.threads.get_state(tid)
        assert g_state["values"]["tenant"] == "globex"
        assert g_state["checkpoint"]["thread_id"] == tid
        assert g_state["checkpoint"]["checkpoint_id"] != a_state["checkpoint"]["checkpoint_id"]
        assert _ids(await g.runs.list(tid), "run_id")[-1] == g_run["run_id"]
        assert (await g.runs.get(tid, g_run["run_id"]))["thread_id"] == tid
        g_history = await g.threads.get_history(tid, limit=100)
        assert {h["checkpoint"]["checkpoint_id"] for h in g_history}.isdisjoint(
            h["checkpoint"]["checkpoint_id"] for h in a_history
        )
        # what globex is shown names the thread by its id, never by how it is stored
        streamed = [
            part.data
            async for part in g.runs.stream(
                tid,
                "agent",
                input=USER,
                stream_mode=[
                    "values",
                    "updates",
                    "messages-tuple",
                    "checkpoints",
                    "tasks",
                    "debug",
                    "custom",
                ],
            )
        ]
        shown = orjson.dumps([streamed, g_history, await g.threads.get_state(tid)]).decode()
        assert f'"{tid}"' in shown and f"globex/{tid}" not in shown

        # acme's thread is as it was: same state, same checkpoints, its one run
        assert await a.threads.get_state(tid) == a_state
        assert await a.threads.get_history(tid, limit=100) == a_history
        assert _ids(await a.runs.list(tid), "run_id") == [a_run["run_id"]]
        got = await a.threads.get(tid)
        assert got["metadata"]["owner"] == "acme" and got["values"]["tenant"] == "acme"
        searched = await a.threads.search()
        assert [(t["thread_id"], t["metadata"].get("owner")) for t in searched] == [(tid, "acme")]

        # a run id of the other tenant's thread of the same id is not found
        async with httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}) as http:
            crossed = await http.get(f"/threads/{tid}/runs/{a_run['run_id']}")
        assert crossed.status_code == 404

        # globex deletes its thread: acme's stays
        await g.threads.delete(tid)
        assert (await a.threads.get_state(tid)) == a_state
        assert _ids(await a.runs.list(tid), "run_id") == [a_run["run_id"]]


def _routes(tid: str, run_id: str, checkpoint_id: str) -> list[tuple[str, str, Any]]:
    """Every route that names a thread (and a run of it), with a body it accepts."""
    run = {"assistant_id": "agent", "input": USER}
    cp = {"checkpoint_id": checkpoint_id, "checkpoint_ns": ""}
    t, r = f"/threads/{tid}", f"/threads/{tid}/runs/{run_id}"
    return [
        ("GET", t, None),
        ("PATCH", t, {"metadata": {"x": 1}}),
        ("GET", f"{t}/state", None),
        ("GET", f"{t}/state/{checkpoint_id}", None),
        ("POST", f"{t}/state/checkpoint", {"checkpoint": cp}),
        ("POST", f"{t}/state", {"values": {"question": "x"}}),
        ("POST", f"{t}/history", {"limit": 10}),
        ("POST", f"{t}/copy", {}),
        ("GET", f"{t}/artifacts", None),
        ("GET", f"{t}/runs", None),
        ("POST", f"{t}/runs", run),
        ("POST", f"{t}/runs/wait", run),
        ("POST", f"{t}/runs/stream", run),
        ("POST", f"{t}/runs/crons", {**run, "schedule": "0 0 * * *"}),
        ("GET", r, None),
        ("GET", f"{r}/join", None),
        ("GET", f"{r}/stream", None),
        ("POST", f"{r}/cancel", None),
        ("DELETE", r, None),
        ("POST", f"{t}/commands", {"id": 1, "method": "state.get", "params": {}}),
        ("POST", f"{t}/stream/events", {"channels": ["values"]}),
        ("DELETE", t, None),
        ("POST", "/threads/search", {"ids": [tid]}),
        ("POST", "/threads/prune", {"thread_ids": [tid]}),
        # last: the caller makes a thread of this id (its own), then deletes it
        ("POST", "/threads", {"thread_id": tid}),
        ("DELETE", f"{t}?then", None),
    ]


async def _answers(
    http: httpx.AsyncClient, routes: list[tuple[str, str, Any]]
) -> list[tuple[str, int, dict[str, str], bytes]]:
    found = []
    for method, path, body in routes:
        answer = await http.request(method, path.removesuffix("?then"), json=body)
        headers = {k: v for k, v in answer.headers.items() if k not in ("date", "x-request-id")}
        content = answer.content
        if path == "/threads" and answer.status_code == 200:  # a new thread: its own times
            made = answer.json()
            content = orjson.dumps({k: v for k, v in made.items() if not k.endswith("_at")})
            headers.pop("content-length")
        found.append((f"{method} {path}", answer.status_code, headers, content))
    return found


async def test_another_tenants_id_answers_as_an_id_nobody_has(secured_on: Settings) -> None:
    """Byte for byte: globex's answers about acme's thread (and run) are the answers it gets
    once that thread is gone (creating the id too, but for the new thread's times); acme's
    thread is untouched by them."""
    acme = (await create_key(secured_on, "acme", "member"))["api_key"]
    globex = (await create_key(secured_on, "globex", "member"))["api_key"]
    tid = f"held-{uuid.uuid4().hex[:6]}"
    with running_server(secured_on) as url:
        async with (
            _client(url, acme) as a,
            httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}, timeout=60) as g,
        ):
            await a.threads.create(thread_id=tid)
            run = await a.runs.wait(tid, "agent", input=USER)
            run_id = (await a.runs.list(tid))[0]["run_id"]
            state = await a.threads.get_state(tid)
            history = await a.threads.get_history(tid, limit=100)
            routes = _routes(tid, run_id, state["checkpoint"]["checkpoint_id"])

            held = await _answers(g, routes)
            assert await a.threads.get_state(tid) == state
            assert await a.threads.get_history(tid, limit=100) == history
            assert _ids(await a.runs.list(tid), "run_id") == [run_id]
            assert run["tenant"] == "acme"

            await a.threads.delete(tid)
            nobodys = await _answers(g, routes)
    assert [h[:2] for h in held] == [n[:2] for n in nobodys]
    assert held == nobodys
    statuses = {name: status for name, status, _, _ in held}
    assert statuses.pop("POST /threads/search") == statuses.pop("POST /threads/prune") == 200
    assert statuses.pop("POST /threads") == 200
    assert statuses.pop(f"DELETE /threads/{tid}?then") == 204
    assert {k: v for k, v in statuses.items() if v != 404} == {}


def _old_schema(url: str) -> None:
    """Keel's tables as the last release before per-tenant ids made them (revision 0003)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            for thread_id, tenant in (("old-acme", "acme"), ("old-default", "default")):
                conn.execute(
                    text(
                        "INSERT INTO keel_threads (thread_id, tenant_id, status, metadata, "
                        "created_at, updated_at) VALUES (:t, :tenant, 'idle', :m, "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"t": thread_id, "tenant": tenant, "m": '{"graph_id": "agent"}'},
                )
                conn.execute(
                    text(
                        "INSERT INTO keel_runs (run_id, thread_id, tenant_id, assistant_id, "
                        "status, multitask_strategy, metadata, kwargs, attempt, created_at, "
                        "updated_at) VALUES (:r, :t, :tenant, 'agent', 'success', 'reject', "
                        "'{}', '{}', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"r": f"run-{thread_id}", "t": thread_id, "tenant": tenant},
                )
    finally:
        engine.dispose()


async def test_a_database_from_before_per_tenant_ids_still_serves_its_threads(
    secured_on: Settings,
) -> None:
    """Threads, runs and checkpoints written when ids were one namespace (checkpoints keyed
    by the bare id, whatever the tenant) are found, continued and kept apart after the
    migration; the default tenant may then take an id an old thread of another tenant holds."""
    _old_schema(service_db_url(secured_on))
    async with open_agent(secured_on) as agent:
        for thread_id, tenant in (("old-acme", "acme"), ("old-default", "default")):
            assert (await agent.arun(SALES_QUESTION, thread_id=thread_id, tenant=tenant)).success
    acme = (await create_key(secured_on, "acme", "member"))["api_key"]
    default = (await create_key(secured_on, "default", "member"))["api_key"]
    with running_server(secured_on) as url:
        async with (
            _client(url, acme) as a,
            _client(url, default) as d,
        ):
            old = await a.threads.get_state("old-acme")
            assert old["values"]["tenant"] == "acme" and old["checkpoint"]["checkpoint_id"]
            assert old["checkpoint"]["thread_id"] == "old-acme"
            assert _ids(await a.runs.list("old-acme"), "run_id") == ["run-old-acme"]
            assert (await a.runs.get("old-acme", "run-old-acme"))["status"] == "success"
            before = len(await a.threads.get_history("old-acme", limit=100))
            await a.runs.wait("old-acme", "agent", input=USER)
            assert len(await a.threads.get_history("old-acme", limit=100)) > before
            assert len(await a.runs.list("old-acme")) == 2

            kept = await d.threads.get_state("old-default")
            assert kept["values"]["tenant"] == "default"

            # the default tenant takes the id of acme's old thread: a thread of its own
            await d.threads.create(thread_id="old-acme")
            assert (await d.threads.get_state("old-acme"))["values"] == {}
            await d.runs.wait("old-acme", "agent", input=USER)
            assert (await d.threads.get_state("old-acme"))["values"]["tenant"] == "default"
            assert (await a.threads.get_state("old-acme"))["values"]["tenant"] == "acme"
            assert len(await a.threads.get_history("old-acme", limit=100)) > before
            assert len(await a.runs.list("old-acme")) == 2

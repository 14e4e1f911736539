"""Bad input the audit turned into 500s (issue 18, items 10 and 15): now a 4xx, nothing stored.

A lone surrogate (`"\\ud800"`) in a thread's metadata was stored and then failed every search
of that tenant; NUL is refused by Postgres. Huge offsets, quotes in a history filter key and
empty or misdirected commands reached the database or the graph. 405s had no `Allow`, and
the schema called the event streams JSON and left out most error statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.config import Settings
from keel.server.store import Store, service_db_url
from tests.conftest import fresh_database
from tests.integration.service_server import running_server

USER: dict[str, Any] = {"messages": [{"role": "user", "content": "What is 2 + 2?"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[tuple[str, Settings]]:
    """`keel serve` on SQLite or Postgres: its URL and settings."""
    if request.param == "sqlite":
        settings = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
        with running_server(settings) as url:
            yield url, settings
        return
    with fresh_database("keel_unstorable") as (db, _):
        settings = settings_factory(checkpoint_url=db)
        with running_server(settings) as url:
            yield url, settings


def _raw(body: str) -> dict[str, Any]:
    """A request whose JSON text is sent as written (escapes included)."""
    return {"content": body.encode(), "headers": {"content-type": "application/json"}}


def _refused(response: httpx.Response, says: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert says in response.json()["message"]


@pytest.mark.parametrize(
    ("escape", "says"),
    [("\\ud800", "lone surrogate"), ("\\udfff", "lone surrogate"), ("\\u0000", "NUL")],
)
async def test_unstorable_text_is_refused_before_anything_is_stored(
    served: tuple[str, Settings], escape: str, says: str
) -> None:
    url, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        metadata = f'{{"thread_id": "poisoned", "metadata": {{"a": "x{escape}y"}}}}'
        _refused(await http.post("/threads", **_raw(metadata)), says)
        assert (await http.get("/threads/poisoned")).status_code == 404
        searched = await http.post("/threads/search", json={})
        assert searched.status_code == 200 and searched.json() == []
        # in a key, deep in a run's input, in a store item: the same
        _refused(await http.post("/threads", **_raw(f'{{"metadata": {{"k{escape}": 1}}}}')), says)
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        question = f'{{"assistant_id": "agent", "input": {{"question": "q{escape}"}}}}'
        _refused(await http.post(f"/threads/{tid}/runs/wait", **_raw(question)), says)
        assert (await http.get(f"/threads/{tid}/runs")).json() == []
        item = f'{{"namespace": ["n"], "key": "k", "value": {{"v": ["{escape}"]}}}}'
        _refused(await http.put("/store/items", **_raw(item)), says)
        # a pair of surrogates is one character, and an escaped backslash is text
        fine = '{"metadata": {"emoji": "\\ud83d\\ude00", "path": "C:\\\\u0000"}}'
        created = await http.post("/threads", **_raw(fine))
        assert created.status_code == 200, created.text
        assert created.json()["metadata"]["emoji"] == "\U0001f600"
        assert created.json()["metadata"]["path"] == "C:\\u0000"


async def test_text_stored_before_the_check_does_not_break_the_tenant(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A thread an older version stored with a lone surrogate is answered, not a 500."""
    settings = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
    with running_server(settings) as url:
        store = Store.open(service_db_url(settings))
        try:
            await store.create_thread("old-one", "default", {"a": "x\ud800y"})
        finally:
            await store.close()
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            searched = await http.post("/threads/search", json={})
            assert searched.status_code == 200, searched.text
            assert searched.json()[0]["metadata"] == {"a": "x?y"}
            assert (await http.get("/threads/old-one")).json()["metadata"] == {"a": "x?y"}


async def test_inputs_that_reached_the_database_or_graph_are_4xx(
    served: tuple[str, Settings],
) -> None:
    url, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        runs = await http.get(f"/threads/{tid}/runs", params={"offset": 10**20})
        assert runs.status_code == 422, runs.text
        searched = await http.post("/threads/search", json={"offset": 10**20})
        assert searched.status_code == 422, searched.text
        history = await http.post(f"/threads/{tid}/history", json={"metadata": {"a'b": 1}})
        assert history.status_code == 422, history.text
        assert "plain name" in history.json()["message"]
        wait = f"/threads/{tid}/runs/wait"
        empty = await http.post(wait, json={"assistant_id": "agent", "command": {}})
        _refused(empty, "a command needs")
        for command in ({"goto": "reason"}, {"resume": "yes"}, {"update": {"question": "q"}}):
            new = await http.post(wait, json={"assistant_id": "agent", "command": command})
            _refused(new, "has no state yet")
        nowhere = await http.post(wait, json={"assistant_id": "agent", "command": {"goto": "x"}})
        _refused(nowhere, "names no node")
        stateless = {"assistant_id": "agent", "command": {"resume": "yes"}}
        _refused(await http.post("/runs/wait", json=stateless), "stateless run")
        assert (await http.get(f"/threads/{tid}/runs")).json() == []
        # a command on a thread that has state still goes through
        done = await http.post(wait, json={"assistant_id": "agent", "input": USER})
        assert done.status_code == 200
        again = await http.post(
            wait, json={"assistant_id": "agent", "command": {"update": {"question": "again"}}}
        )
        assert again.status_code == 200 and "__error__" not in again.json(), again.text


async def test_405_names_every_method_of_the_path(served: tuple[str, Settings]) -> None:
    url, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        put = await http.put("/threads/some-thread", json={})
        assert put.status_code == 405 and put.json()["error"] == "method_not_allowed"
        assert put.headers["allow"] == "DELETE, GET, PATCH"
        listed = await http.get("/threads")
        assert listed.status_code == 405 and listed.headers["allow"] == "POST"


async def test_the_schema_says_what_routes_answer(served: tuple[str, Settings]) -> None:
    url, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    for path, method in [
        ("/threads/{thread_id}/runs/stream", "post"),
        ("/runs/stream", "post"),
        ("/threads/{thread_id}/runs/{run_id}/stream", "get"),
    ]:
        answers = paths[path][method]["responses"]
        assert list(answers["200"]["content"]) == ["text/event-stream"], path
        assert list(answers["404"]["content"]) == ["application/json"], path
        assert list(answers["422"]["content"]) == ["application/json"], path
    assert "410" in paths["/threads/{thread_id}/runs/{run_id}/stream"]["get"]["responses"]
    assert {"409", "429"} <= set(paths["/threads/{thread_id}/runs/wait"]["post"]["responses"])
    for path, operations in paths.items():
        for method, operation in operations.items():
            if operation["tags"] == ["health"]:
                continue  # no key, no input
            declared = set(operation["responses"])
            assert {"401", "422", "503"} <= declared, (method, path, declared)
            if "{" in path:
                assert "404" in declared, (method, path)
    error = schema["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "message"}

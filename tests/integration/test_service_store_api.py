"""The store endpoints driven by the official `langgraph-sdk` client, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from keel.config import Settings
from keel.server.admin import create_key
from tests.integration.service_server import running_server


@pytest.fixture(params=["sqlite", "postgres"])
def settings(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings], tmp_path: Path
) -> Settings:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.sqlite'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    return settings_factory(checkpoint_url=url, service={"require_api_key": True})


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with running_server(settings) as url:
        yield url


async def _key(settings: Settings) -> str:
    """A key of a tenant of its own (the Postgres database is shared by the session)."""
    made = await create_key(settings, f"t{uuid.uuid4().hex[:10]}", "member")
    return str(made["api_key"])


async def test_put_get_search_list_delete(settings: Settings, server: str) -> None:
    async with get_client(url=server, api_key=await _key(settings)) as client:
        store = client.store
        await store.put_item(["users", "alice"], "prefs", {"theme": "dark", "size": 3})
        await store.put_item(["users", "alice", "notes"], "n1", {"text": "hi", "size": 5})
        await store.put_item(["users", "bob"], "prefs", {"theme": "light", "size": 7})

        got = await store.get_item(["users", "alice"], key="prefs")
        assert (got["namespace"], got["key"], got["value"]) == (
            ["users", "alice"],
            "prefs",
            {"theme": "dark", "size": 3},
        )
        assert got["created_at"] == got["updated_at"]

        await asyncio.sleep(0.01)
        await store.put_item(["users", "alice"], "prefs", {"theme": "blue", "size": 3})
        again = await store.get_item(["users", "alice"], key="prefs")
        assert again["value"] == {"theme": "blue", "size": 3}
        assert again["updated_at"] >= got["updated_at"]
        assert again["updated_at"].endswith("+00:00")

        found = await store.search_items(["users"], limit=10)
        assert sorted((i["namespace"], i["key"]) for i in found["items"]) == [
            (["users", "alice"], "prefs"),
            (["users", "alice", "notes"], "n1"),
            (["users", "bob"], "prefs"),
        ]
        light = await store.search_items(["users"], filter={"theme": "light"})
        assert [i["namespace"] for i in light["items"]] == [["users", "bob"]]
        big = await store.search_items([], filter={"size": {"$gt": 4}})
        assert sorted(i["key"] for i in big["items"]) == ["n1", "prefs"]
        assert len((await store.search_items(["users"], limit=2))["items"]) == 2
        assert len((await store.search_items(["users"], limit=2, offset=2))["items"]) == 1

        listed = await store.list_namespaces()
        assert sorted(listed["namespaces"]) == [
            ["users", "alice"],
            ["users", "alice", "notes"],
            ["users", "bob"],
        ]
        assert (await store.list_namespaces(max_depth=1))["namespaces"] == [["users"]]
        assert sorted((await store.list_namespaces(prefix=["users", "alice"]))["namespaces"]) == [
            ["users", "alice"],
            ["users", "alice", "notes"],
        ]
        assert (await store.list_namespaces(suffix=["notes"]))["namespaces"] == [
            ["users", "alice", "notes"]
        ]

        await store.delete_item(["users", "alice"], key="prefs")
        with pytest.raises(NotFoundError):
            await store.get_item(["users", "alice"], key="prefs")
        with pytest.raises(NotFoundError):
            await store.delete_item(["users", "alice"], key="prefs")
        with pytest.raises(NotFoundError):
            await store.get_item(["users", "nobody"], key="prefs")
        assert (await store.get_item(["users", "bob"], key="prefs"))["value"]["theme"] == "light"


async def test_tenants_never_see_each_others_items(settings: Settings, server: str) -> None:
    async with (
        get_client(url=server, api_key=await _key(settings)) as a,
        get_client(url=server, api_key=await _key(settings)) as b,
    ):
        await a.store.put_item(["memories"], "m1", {"secret": "a's"})
        with pytest.raises(NotFoundError):
            await b.store.get_item(["memories"], key="m1")
        with pytest.raises(NotFoundError):
            await b.store.delete_item(["memories"], key="m1")
        assert (await b.store.search_items(["memories"]))["items"] == []
        assert (await b.store.search_items([], filter={"secret": "a's"}))["items"] == []
        assert (await b.store.list_namespaces())["namespaces"] == []

        await b.store.put_item(["memories"], "m1", {"secret": "b's"})
        assert (await a.store.get_item(["memories"], key="m1"))["value"] == {"secret": "a's"}
        assert (await b.store.get_item(["memories"], key="m1"))["value"] == {"secret": "b's"}
        await b.store.delete_item(["memories"], key="m1")
        assert (await a.store.get_item(["memories"], key="m1"))["value"] == {"secret": "a's"}


BAD: list[tuple[str, str, dict[str, Any], str]] = [
    ("PUT", "/store/items", {"json": {"namespace": [], "key": "k", "value": {}}}, "namespace"),
    ("PUT", "/store/items", {"json": {"namespace": ["a.b"], "key": "k", "value": {}}}, "'.'"),
    ("PUT", "/store/items", {"json": {"namespace": ["a"], "key": "k", "value": [1]}}, "value"),
    ("PUT", "/store/items", {"json": {"namespace": ["a"], "key": "", "value": {}}}, "key"),
    (
        "PUT",
        "/store/items",
        {"json": {"namespace": ["a"], "key": "k", "value": {"t": "x\u0000y"}}},
        "NUL",
    ),
    (
        "PUT",
        "/store/items",
        {"json": {"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}},
        "ttl",
    ),
    ("GET", "/store/items", {"params": {"namespace": "", "key": "k"}}, "namespace"),
    ("GET", "/store/items", {"params": {"namespace": "a..b", "key": "k"}}, "namespace"),
    ("GET", "/store/items", {"params": {"key": "k"}}, "namespace"),
    ("DELETE", "/store/items", {"json": {"namespace": [], "key": "k"}}, "namespace"),
    ("POST", "/store/items/search", {"json": {"limit": -1}}, "limit"),
    ("POST", "/store/items/search", {"json": {"offset": -5}}, "offset"),
    ("POST", "/store/items/search", {"json": {"query": "cats"}}, "semantic search"),
    ("POST", "/store/items/search", {"json": {"filter": {"a": {"$regex": "x"}}}}, "operator"),
    ("POST", "/store/namespaces", {"json": {"max_depth": 0}}, "max_depth"),
    ("POST", "/store/namespaces", {"json": {"prefix": ["a.b"]}}, "'.'"),
]


async def test_bad_input_gets_a_clear_4xx(settings: Settings, server: str) -> None:
    headers = {"x-api-key": await _key(settings)}
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=10) as http:
        for method, path, kwargs, says in BAD:
            response = await http.request(method, path, **kwargs)
            assert 400 <= response.status_code < 500, (method, path, kwargs, response.text)
            body = response.json()
            assert body["error"] and says in body["message"], (kwargs, body)
        huge = [  # fine for Postgres' jsonb, too big for SQLite: never a 5xx
            (
                "PUT",
                "/store/items",
                {"json": {"namespace": ["a"], "key": "k", "value": {"n": 2**70}}},
            ),
            ("POST", "/store/items/search", {"json": {"filter": {"a": 10**400}}}),
        ]
        for method, path, kwargs in huge:
            response = await http.request(method, path, **kwargs)
            assert response.status_code < 500, (kwargs, response.text)
    async with get_client(url=server, api_key=headers["x-api-key"]) as client:
        with pytest.raises(UnprocessableEntityError):
            await client.store.search_items(["a"], limit=-1)


async def test_ttl_is_honoured(settings: Settings, server: str) -> None:
    async with get_client(url=server, api_key=await _key(settings)) as client:
        await client.store.put_item(["tmp"], "short", {"v": 1}, ttl=0.001)
        await client.store.put_item(["tmp"], "long", {"v": 2}, ttl=60)
        await client.store.put_item(["tmp"], "kept", {"v": 3}, index=False)
        await asyncio.sleep(0.3)
        if settings.checkpoint_url.startswith("sqlite"):
            path = settings.checkpoint_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as db:
                rows = dict(db.execute("SELECT key, ttl_minutes FROM store").fetchall())
            assert rows == {"short": 0.001, "long": 60, "kept": None}
        else:  # Postgres hides an expired item before the sweep deletes it
            with pytest.raises(NotFoundError):
                await client.store.get_item(["tmp"], key="short")
        assert (await client.store.get_item(["tmp"], key="long"))["value"] == {"v": 2}
        assert (await client.store.get_item(["tmp"], key="kept"))["value"] == {"v": 3}

"""API keys, tenants and roles: another tenant's threads and runs do not exist (404)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import AuthenticationError, NotFoundError

from keel.config import Settings
from keel.server.admin import create_key
from keel.server.store import Store, hash_key, service_db_url
from tests.integration.service_server import running_server
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}


async def test_keys_are_stored_hashed(secured: Settings) -> None:
    made = await create_key(secured, "acme", "member")
    store = Store.open(service_db_url(secured))
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT key_hash, role FROM keel_api_keys")).all()
        assert rows == [(hash_key(made["api_key"]), "member")]
        assert made["api_key"] not in str(rows)
        assert (await store.find_key(made["api_key"])) is not None
        assert await store.revoke_key(made["key_id"])
        assert (await store.find_key(made["api_key"])) is None
    finally:
        await store.close()


async def test_tenants_cannot_see_each_other(secured: Settings) -> None:
    acme = (await create_key(secured, "acme", "member"))["api_key"]
    globex = (await create_key(secured, "globex", "member"))["api_key"]
    with running_server(secured) as url:
        async with (
            get_client(url=url, api_key=acme) as a,
            get_client(url=url, api_key=globex) as g,
            get_client(url=url, api_key=None) as anonymous,
        ):
            with pytest.raises(AuthenticationError):
                await anonymous.threads.create()
            async with get_client(url=url, api_key="keel_wrong") as wrong:
                with pytest.raises(AuthenticationError):
                    await wrong.assistants.search()
            tid = (await a.threads.create(thread_id="shared-name"))["thread_id"]
            run = await a.runs.create(tid, "agent", input=USER)
            await a.runs.join(tid, run["run_id"])
            for call in (
                g.threads.get(tid),
                g.threads.get_state(tid),
                g.threads.get_history(tid),
                g.runs.get(tid, run["run_id"]),
                g.runs.list(tid),
                g.runs.create(tid, "agent", input=USER),
                g.runs.cancel(tid, run["run_id"]),
                g.threads.update(tid, metadata={"x": 1}),
                g.threads.delete(tid),
            ):
                with pytest.raises(NotFoundError):
                    await call
            assert await g.threads.search() == []
            assert [t["thread_id"] for t in await a.threads.search()] == [tid]
            assert (await a.threads.get_state(tid))["values"]["tenant"] == "acme"
            # the id is acme's, and globex is not told: it gets a thread of its own
            async with httpx.AsyncClient(base_url=url, headers={"x-api-key": globex}) as http:
                taken = await http.post("/threads", json={"thread_id": tid})
            assert taken.status_code == 200 and taken.json()["values"] == {}
            assert (await a.threads.get_state(tid))["values"]["tenant"] == "acme"


async def test_a_role_only_gets_its_tools(secured: Settings) -> None:
    limited = (await create_key(secured, "acme", "calculator"))["api_key"]
    with running_server(secured) as url:
        async with get_client(url=url, api_key=limited) as client:
            values = await client.runs.wait(None, "agent", input=USER)
    tool_replies = [m["content"] for m in values["messages"] if m["type"] == "tool"]
    assert tool_replies and "sql_query" in tool_replies[0] and "Error" in tool_replies[0]
    assert "revenue was" not in values["outcome"]["output"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_keel_serve_and_keys_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales",
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        KEEL_SERVICE__REQUIRE_API_KEY="true",
    )
    keel = [sys.executable, "-m", "keel"]
    made = subprocess.run(
        [*keel, "keys", "create", "--tenant", "acme", "--role", "member"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = made.stdout.strip()
    assert key.startswith("keel_")
    port = _free_port()
    server = subprocess.Popen(
        [*keel, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.05)

        async def ask() -> dict[str, object]:
            async with get_client(url=url, api_key=key) as client:
                return await client.runs.wait(None, "agent", input=USER)  # type: ignore[return-value]

        values = asyncio.run(ask())
        assert "Their total revenue was $" in str(values["outcome"])
        assert httpx.get(f"{url}/threads/x").status_code == 401
    finally:
        server.terminate()
        server.wait(15)

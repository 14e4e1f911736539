"""A user's project served by `keel serve` (and `keel worker`), driven by the official SDK.

The project, made in a temporary folder: its own `tools.py`; a `langgraph.json` naming two
Keel agents that differ in tools, instructions and model (scripted), one plain `StateGraph`
that asks a human for a name (`interrupt`) and reads a declared context, and a plain graph
with a Keel agent as its subgraph. Assistants are created with config, versioned, searched,
counted and deleted; their config and context change what their runs do.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from keel.config import Settings
from keel.project import load_project
from keel.server.graphs import LEGACY_ASSISTANT_ID, NAMESPACE_GRAPH
from tests.integration.service_server import running_server
from tests.sales_truth import SALES_QUESTION

FILES = {
    "langgraph.json": """
        {"graphs": {"sales": "./agents.py:sales", "shouter": "./agents.py:shouter",
                    "greeter": "./plain.py:graph", "nested": "./plain.py:nested",
                    "made": "./plain.py:make_graph"}}
    """,
    "tools.py": '''
        import keel


        @keel.tool(idempotent=True)
        def shout(text: str) -> str:
            """Repeat the text in capitals."""
            return text.upper() + "!"
    ''',
    "agents.py": """
        import keel
        from tools import shout

        sales = keel.Agent(
            name="sales",
            instructions="You answer questions about last month's sales.",
            model="scripted:sales",
        )
        shouter = keel.Agent(
            name="shouter",
            instructions="You repeat what you are asked.",
            tools=[shout],
            model="scripted:echo",
        )
    """,
    "plain.py": """
        import operator
        from dataclasses import dataclass
        from typing import Annotated, TypedDict

        from langchain_core.messages import AIMessage
        from langgraph.graph import END, START, MessagesState, StateGraph
        from langgraph.runtime import Runtime
        from langgraph.types import interrupt

        from agents import shouter


        @dataclass
        class Greeting:
            greeting: str = "Hello"


        class State(TypedDict, total=False):
            name: str
            log: Annotated[list[str], operator.add]


        def ask(state: State) -> State:
            return {"name": state.get("name") or interrupt({"question": "your name?"})}


        def greet(state: State, runtime: Runtime[Greeting]) -> State:
            greeting = runtime.context.greeting if runtime.context else "Hello"
            return {"log": [f"{greeting}, {state['name']}"]}


        builder = StateGraph(State, context_schema=Greeting)
        builder.add_node("ask", ask)
        builder.add_node("greet", greet)
        builder.add_edge(START, "ask")
        builder.add_edge("ask", "greet")
        builder.add_edge("greet", END)
        graph = builder.compile()

        outer = StateGraph(MessagesState)
        outer.add_node("agent", shouter.graph)
        outer.add_node("check", lambda state: {"messages": [AIMessage("checked")]})
        outer.add_edge(START, "agent")
        outer.add_edge("agent", "check")
        outer.add_edge("check", END)
        nested = outer.compile()


        def make_graph(config):
            # a factory: the graph it makes depends on the run's config
            loud = config.get("configurable", {}).get("loud", False)
            made = StateGraph(State)
            made.add_node("ask", ask)
            made.add_node("greet", lambda s: {"log": [("HEY " if loud else "hey ") + s["name"]]})
            made.add_edge(START, "ask")
            made.add_edge("ask", "greet")
            made.add_edge("greet", END)
            return made
    """,
}
USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
SALES_ANSWER = "Their total revenue was $"


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def _output(values: dict[str, Any]) -> str:
    return str(values["outcome"]["output"])


async def _assistants_apply(url: str) -> None:
    """Assistants created, versioned, searched, counted, deleted; their config applies."""
    async with get_client(url=url, api_key=None) as client:
        defaults = await client.assistants.search(limit=100)
        assert sorted(a["graph_id"] for a in defaults) == [
            "greeter",
            "made",
            "nested",
            "sales",
            "shouter",
        ]
        by_graph = {a["graph_id"]: a for a in defaults}
        assert by_graph["sales"]["assistant_id"] == str(uuid.uuid5(NAMESPACE_GRAPH, "sales"))
        assert await client.assistants.count() == 5

        # one graph, two assistants: the second's model is the echo model
        echo = await client.assistants.create(
            "sales",
            config={"configurable": {"model": "scripted:echo"}},
            metadata={"team": "a"},
            name="Sales, echoing",
        )
        assert echo["version"] == 1 and echo["config"]["configurable"]["model"] == "scripted:echo"
        tid = (await client.threads.create())["thread_id"]
        assert SALES_ANSWER in _output(await client.runs.wait(tid, "sales", input=USER))
        tid = (await client.threads.create())["thread_id"]
        echoed = await client.runs.wait(tid, echo["assistant_id"], input=USER)
        assert _output(echoed) == f"You asked: {SALES_QUESTION}"
        assert (await client.threads.get(tid))["metadata"]["assistant_id"] == echo["assistant_id"]
        # a run's own config applies the same way
        own = await client.runs.wait(
            None, "sales", input=USER, config={"configurable": {"model": "scripted:echo"}}
        )
        assert _output(own) == f"You asked: {SALES_QUESTION}"
        # a tool subset: the sales model's first call (sql_query) is no longer a tool
        no_sql = await client.assistants.create(
            "sales", context={"tools": ["calculator"]}, name="calculator only"
        )
        limited = await client.runs.wait(None, no_sql["assistant_id"], input=USER)
        assert SALES_ANSWER not in _output(limited)

        # what cannot apply is a 422 naming the field, for assistants and runs alike
        with pytest.raises(UnprocessableEntityError, match="colour"):
            await client.assistants.create("sales", config={"configurable": {"colour": "red"}})
        with pytest.raises(UnprocessableEntityError, match="recursion_limit"):
            await client.assistants.create("shouter", config={"recursion_limit": 5})
        with pytest.raises(UnprocessableEntityError, match=r"context\.volume"):
            await client.assistants.create("greeter", context={"volume": 11})
        with pytest.raises(httpx.HTTPStatusError, match="colour") as refused:
            await client.runs.wait(
                None, "sales", input=USER, config={"configurable": {"colour": "red"}}
            )
        assert refused.value.response.status_code == 422
        with pytest.raises(UnprocessableEntityError, match="graph_id"):
            await client.assistants.create("nobody")

        # a plain graph's assistant: its context is the graph's declared context
        hi = await client.assistants.create("greeter", context={"greeting": "Hi"}, name="Hi")
        done = await client.runs.wait(None, hi["assistant_id"], input={"name": "Ada"})
        assert done["log"] == ["Hi, Ada"]
        done = await client.runs.wait(None, "greeter", input={"name": "Ada"})
        assert done["log"] == ["Hello, Ada"]
        # a graph factory is called with the run's config (the assistant's, then the run's)
        loud = await client.assistants.create("made", config={"configurable": {"loud": True}})
        done = await client.runs.wait(None, loud["assistant_id"], input={"name": "Bo"})
        assert done["log"] == ["HEY Bo"]
        done = await client.runs.wait(None, "made", input={"name": "Bo"})
        assert done["log"] == ["hey Bo"]

        # update makes a new version; set_latest makes an old one current again
        v2 = await client.assistants.update(
            echo["assistant_id"], config={"configurable": {}}, metadata={"stage": "two"}
        )
        assert v2["version"] == 2 and v2["metadata"] == {"team": "a", "stage": "two"}
        assert SALES_ANSWER in _output(
            await client.runs.wait(None, echo["assistant_id"], input=USER)
        )
        versions = await client.assistants.get_versions(echo["assistant_id"])
        assert [v["version"] for v in versions] == [2, 1]
        back = await client.assistants.set_latest(echo["assistant_id"], 1)
        assert back["version"] == 1 and back["config"]["configurable"]["model"] == "scripted:echo"
        assert (await client.assistants.get(echo["assistant_id"]))["version"] == 1
        again = await client.runs.wait(None, echo["assistant_id"], input=USER)
        assert _output(again) == f"You asked: {SALES_QUESTION}"
        with pytest.raises(NotFoundError):
            await client.assistants.set_latest(echo["assistant_id"], 7)

        # search and count: graph, metadata, name, sort, pages
        sales = await client.assistants.search(graph_id="sales", limit=100)
        assert len(sales) == 3 and {a["graph_id"] for a in sales} == {"sales"}
        assert [a["name"] for a in await client.assistants.search(metadata={"team": "a"})] == [
            "Sales, echoing"
        ]
        assert [a["name"] for a in await client.assistants.search(name="ECHO")] == [
            "Sales, echoing"
        ]
        named = await client.assistants.search(sort_by="name", sort_order="asc", limit=100)
        assert [a["name"] for a in named] == sorted(a["name"] for a in named)
        page = await client.assistants.search(
            sort_by="name", sort_order="asc", limit=2, offset=2, response_format="object"
        )
        assert [a["name"] for a in page["assistants"]] == [a["name"] for a in named[2:4]]
        assert page["next"] == "4"
        assert await client.assistants.count(graph_id="sales") == 3
        assert await client.assistants.count(metadata={"team": "a"}) == 1

        # delete: gone; a default assistant cannot be deleted
        await client.assistants.delete(no_sql["assistant_id"])
        with pytest.raises(NotFoundError):
            await client.assistants.get(no_sql["assistant_id"])
        assert await client.assistants.count(graph_id="sales") == 2
        with pytest.raises(ConflictError):
            await client.assistants.delete(by_graph["sales"]["assistant_id"])
        with pytest.raises(ConflictError):
            await client.assistants.create(
                "sales", assistant_id=echo["assistant_id"], if_exists="raise"
            )
        same = await client.assistants.create(
            "sales", assistant_id=echo["assistant_id"], if_exists="do_nothing"
        )
        assert same["assistant_id"] == echo["assistant_id"] and same["version"] == 1
        # delete_threads: the assistant's threads go with it, others stay
        kept = (await client.threads.create())["thread_id"]
        await client.assistants.delete(echo["assistant_id"], delete_threads=True)
        with pytest.raises(NotFoundError):
            await client.threads.get(tid)
        assert (await client.threads.get(kept))["thread_id"] == kept


async def _graphs_stream_and_resume(url: str) -> None:
    """Each graph's runs stream; a plain graph's interrupt resumes; a nested agent runs."""
    async with get_client(url=url, api_key=None) as client:
        # a plain graph: streamed, interrupted, resumed, its state and history read
        tid = (await client.threads.create())["thread_id"]
        parts = [
            p async for p in client.runs.stream(tid, "greeter", input={}, stream_mode="updates")
        ]
        assert parts[0].event == "metadata" and parts[-1].event == "end"
        assert any("__interrupt__" in (p.data or {}) for p in parts if p.event == "updates")
        thread = await client.threads.get(tid)
        assert thread["status"] == "interrupted" and thread["metadata"]["graph_id"] == "greeter"
        state = await client.threads.get_state(tid)
        assert state["next"] == ["ask"]
        assert state["tasks"][0]["interrupts"][0]["value"] == {"question": "your name?"}
        resumed = [
            p
            async for p in client.runs.stream(
                tid, "greeter", command={"resume": "Grace"}, stream_mode="values"
            )
        ]
        values = [p.data for p in resumed if p.event == "values"]
        assert values[-1] == {"name": "Grace", "log": ["Hello, Grace"]}
        assert (await client.threads.get(tid))["status"] == "idle"
        history = await client.threads.get_history(tid)
        assert len(history) >= 3 and history[0]["values"]["log"] == ["Hello, Grace"]
        # the thread holds the greeter's state: another graph's run is refused
        with pytest.raises(httpx.HTTPStatusError, match="greeter") as refused:
            await client.runs.wait(tid, "shouter", input={"messages": "hi"})
        assert refused.value.response.status_code == 409

        # a Keel agent with its own tool and instructions, streamed
        tid = (await client.threads.create())["thread_id"]
        chunks = [
            p
            async for p in client.runs.stream(
                tid, "shouter", input={"messages": "hi there"}, stream_mode="updates"
            )
        ]
        nodes = [next(iter(p.data)) for p in chunks if p.event == "updates"]
        assert nodes[-1] == "finish"
        final = (await client.threads.get_state(tid))["values"]
        assert _output(final) == "You asked: hi there"
        # the sales model on the shouter's tools: no sql_query there, so no sales answer
        other = await client.runs.wait(
            None, "shouter", input=USER, config={"configurable": {"model": "scripted:sales"}}
        )
        assert SALES_ANSWER not in _output(other)

        # a Keel agent as the subgraph of a plain graph
        out = await client.runs.wait(None, "nested", input={"messages": "nested hello"})
        contents = [m["content"] for m in out["messages"]]
        assert "You asked: nested hello" in contents and contents[-1] == "checked"
        drawn = await client.assistants.get_graph("nested", xray=1)
        assert any(n["id"].startswith("agent:") for n in drawn["nodes"])
        assert "agent" in await client.assistants.get_subgraphs("nested")
        schemas = await client.assistants.get_schemas("greeter")
        assert set(schemas["context_schema"]["properties"]) == {"greeting"}


def _serve(settings: Settings, folder: Path) -> Any:
    return running_server(settings, project=load_project(folder / "langgraph.json"))


async def test_a_project_served_in_process(
    settings_factory: Callable[..., Settings], project_dir: Path, tmp_path: Path
) -> None:
    settings = settings_factory(checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
    with _serve(settings, project_dir) as url:
        await _assistants_apply(url)
        await _graphs_stream_and_resume(url)


async def test_assistants_belong_to_their_tenant(
    settings_factory: Callable[..., Settings], project_dir: Path, tmp_path: Path
) -> None:
    from keel.server.admin import create_key

    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service={"require_api_key": True},
    )
    with _serve(settings, project_dir) as url:
        keys = [(await create_key(settings, t, "admin"))["api_key"] for t in ("acme", "globex")]
        async with (
            get_client(url=url, api_key=keys[0]) as acme,
            get_client(url=url, api_key=keys[1]) as globex,
        ):
            made = await acme.assistants.create("sales", name="acme's")
            assert await acme.assistants.count() == 6
            assert await globex.assistants.count() == 5
            for call in (
                globex.assistants.get(made["assistant_id"]),
                globex.assistants.update(made["assistant_id"], name="mine now"),
                globex.assistants.delete(made["assistant_id"]),
            ):
                with pytest.raises(NotFoundError):
                    await call
            with pytest.raises(httpx.HTTPStatusError, match="not found") as refused:
                await globex.runs.wait(None, made["assistant_id"], input=USER)
            assert refused.value.response.status_code == 404
            assert (await acme.assistants.get(made["assistant_id"]))["name"] == "acme's"


async def test_the_built_in_agent_keeps_its_ids(sales_server: str) -> None:
    """Without a project: the built-in agent as `agent`, its old assistant id unchanged."""
    async with get_client(url=sales_server, api_key=None) as client:
        found = await client.assistants.search()
        assert [(a["graph_id"], a["assistant_id"]) for a in found] == [
            ("agent", LEGACY_ASSISTANT_ID)
        ]
        for ref in ("agent", "data_analyst", LEGACY_ASSISTANT_ID):
            assert (await client.assistants.get(ref))["assistant_id"] == LEGACY_ASSISTANT_ID
        made = await client.assistants.create(
            "agent", config={"configurable": {"model": "scripted:echo"}}
        )
        run = await client.runs.wait(None, made["assistant_id"], input=USER)
        assert _output(run) == f"You asked: {SALES_QUESTION}"
    async with httpx.AsyncClient(base_url=sales_server) as http:
        body = {"assistant_id": "agent", "input": USER, "context": {"colour": "red"}}
        refused = await http.post("/runs/wait", json=body)
        assert refused.status_code == 422 and "colour" in refused.text
        body = {"assistant_id": "agent", "input": USER, "stream_subgraphs": True}
        refused = await http.post("/runs/stream", json=body)
        assert refused.status_code == 422 and "stream_subgraphs" in refused.text


@contextmanager
def _project_worker(setup: dict[str, Any], folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = open(setup["logs"] / "project-worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keel",
            "worker",
            "--concurrency",
            "2",
            "--config",
            str(folder / "langgraph.json"),
        ],
        env={**setup["env"], "KEEL_MODEL": "scripted:sales"},
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_project_served_with_a_worker(
    distributed: dict[str, Any], project_dir: Path
) -> None:
    """The API defers to a `keel worker` that loads the same project (Postgres, Redis)."""
    with (
        _serve(distributed["settings"], project_dir) as url,
        _project_worker(distributed, project_dir),
    ):
        await asyncio.wait_for(_assistants_apply(url), 240)
        await asyncio.wait_for(_graphs_stream_and_resume(url), 240)


async def test_a_cron_runs_a_plain_graphs_assistant(
    settings_factory: Callable[..., Settings], project_dir: Path, tmp_path: Path
) -> None:
    """A cron names an assistant of a plain graph: its run has the assistant's context."""
    from tests.integration.test_service_crons import YEARLY, _make_due, _until

    settings = settings_factory(
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}", service={"cron_tick_s": 0.1}
    )
    with _serve(settings, project_dir) as url:
        async with get_client(url=url, api_key=None) as client:
            hi = await client.assistants.create("greeter", context={"greeting": "Hi"})
            tid = (await client.threads.create())["thread_id"]
            cron = await client.crons.create_for_thread(
                tid, hi["assistant_id"], schedule=YEARLY, input={"name": "Cron"}
            )
            assert cron["assistant_id"] == hi["assistant_id"]
            await _make_due(settings, cron["cron_id"])

            async def finished() -> list[Any]:
                runs = await client.runs.list(tid)
                return [r for r in runs if r["status"] == "success"]

            await _until(finished)
            state = await client.threads.get_state(tid)
            assert state["values"]["log"] == ["Hi, Cron"]
            with pytest.raises(UnprocessableEntityError, match="volume"):
                await client.crons.create("greeter", schedule=YEARLY, context={"volume": 1})

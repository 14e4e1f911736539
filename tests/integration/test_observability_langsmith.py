"""LangSmith tracing, offline: a capture server on 127.0.0.1 stands in for the API.

Asserted from the captured payloads: one trace tree per run (graph → node → model/tool),
the run's metadata and tags, tail sampling, and that a dead or stalled endpoint neither
fails nor stalls a run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langsmith import utils as ls_utils

from keel.config import Settings
from keel.errors import ModelCallError
from keel.runtime import open_agent
from keel.testing.langsmith_capture import CaptureServer
from keel.testing.scripted import FunctionModel, ScriptedModel
from tests.sales_truth import SALES_QUESTION

FAKE_KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"


@pytest.fixture
def langsmith_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point LangSmith at `url` through its own variables, tracing on."""

    def point(url: str) -> None:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
        monkeypatch.setenv("LANGSMITH_API_KEY", FAKE_KEY)
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_PROJECT", "keel-tests")
        ls_utils.get_env_var.cache_clear()

    yield point
    monkeypatch.undo()
    ls_utils.get_env_var.cache_clear()


def roots(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("_op") == "post" and not r.get("parent_run_id")]


def children(runs: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("parent_run_id") == parent["id"]]


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


async def test_a_run_is_one_tree_with_its_metadata(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(model="scripted:sales")  # tracing "auto" follows the env
        async with open_agent(settings) as agent:
            assert agent.tracing.enabled
            result = await agent.arun(SALES_QUESTION, thread_id="t-trace", tenant="acme")
        assert result.success
        runs = server.runs()

    assert all(r["_op"] == "post" for r in runs), "each run is sent once, complete"
    [root] = roots(runs)
    assert root["name"] == "LangGraph" and root["end_time"]
    meta = metadata(root)
    assert meta["run_id"] == result.metadata.run_id
    assert meta["thread_id"] == "t-trace"
    assert meta["tenant"] == "acme"
    assert meta["tokens"] == result.metadata.total_tokens > 0
    assert meta["cost_usd"] == pytest.approx(result.metadata.total_cost)
    assert meta["model_calls"] == 3
    assert meta["outcome"] == "success"
    assert "tier" in meta
    assert root["session_name"] == "keel-tests"

    nodes = children(runs, root)
    names = [n["name"] for n in sorted(nodes, key=lambda r: r["dotted_order"])]
    assert names == ["reason", "act", "reason", "act", "reason", "finish"]
    for node in nodes:
        assert metadata(node)["run_id"] == result.metadata.run_id
        if node["name"] == "reason":
            models = [c for c in children(runs, node) if c["run_type"] == "llm"]
            assert len(models) == 1 and models[0]["outputs"]["generations"]
            prompt = json.dumps(models[0]["inputs"]["messages"])
            assert SALES_QUESTION[:40] in prompt
        if node["name"] == "act":
            [tool] = [c for c in children(runs, node) if c["run_type"] == "tool"]
            assert tool["name"] in ("sql_query", "calculator")
            assert tool["outputs"]["output"] and not tool.get("error")
    tools = sorted(c["name"] for n in nodes if n["name"] == "act" for c in children(runs, n))
    assert tools == ["calculator", "sql_query"]
    # light payloads: node runs carry no copy of the whole state, model runs keep theirs
    assert all("messages" not in (n.get("inputs") or {}) for n in nodes)
    assert set(root["inputs"]) <= {"question", "tenant", "run_id"}


@pytest.mark.parametrize("zstd", [True, False])
async def test_traces_are_compressed_when_langsmith_offers_it(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None], zstd: bool
) -> None:
    """Every LangSmith deployment offers zstd run compression (`/info`); Keel's client then
    sends compressed batches (much cheaper for the sender than the uncompressed multipart
    fallback), and falls back when a server does not offer it. The same runs arrive."""
    with CaptureServer(zstd=zstd) as server:
        langsmith_env(server.url)
        async with open_agent(settings_factory(model="scripted:sales")) as agent:
            assert (await agent.arun(SALES_QUESTION)).success
        runs = server.runs()
        assert len(server.requests) >= 1
        assert server.compressed_requests == (len(server.requests) if zstd else 0)
    [root] = roots(runs)
    assert len(children(runs, root)) == 6 and len(runs) == 12


async def test_the_first_traces_are_compressed_when_the_server_answers_slowly(
    settings_factory: Callable[..., Settings],
    langsmith_env: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client learns from `/info` whether to compress; opening the agent waits for that
    answer (up to 0.5 s; 3 s here, for a server 1 s slow), so even the first run's traces
    go compressed."""
    monkeypatch.setattr("keel.observability.tracing._START_WAIT_S", 3.0)
    with CaptureServer(info_delay_s=1.0) as server:
        langsmith_env(server.url)
        async with open_agent(settings_factory(model="scripted:sales")) as agent:
            assert (await agent.arun(SALES_QUESTION)).success
        assert len(server.runs()) == 12
        assert server.compressed_requests == len(server.requests)


async def test_retry_and_fallback_are_tagged_and_failed_runs_always_sent(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    flaky = ScriptedModel([ModelCallError("503 from provider"), "Paris."])
    dead = FunctionModel(fn=lambda m, i: ModelCallError("401 bad key", kind="degradable"))
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(observability={"trace_sample_rate": 0.0})
        async with open_agent(settings, model=flaky) as agent:
            ok = await agent.arun("Capital of France?")
        async with open_agent(settings, model=dead) as agent:
            failed = await agent.arun("Capital of France?")
        assert ok.success and not failed.success
        runs = server.runs()

    by_run = {metadata(r)["run_id"]: r for r in roots(runs)}
    retried = by_run[ok.metadata.run_id]
    assert "retry" in retried["tags"]
    assert metadata(retried)["keel_kept_because"] == ["retry"]
    [reason_retry] = [
        n for n in children(runs, retried) if n["name"] == "reason" and "retry" in n["tags"]
    ]
    assert reason_retry["outputs"]["signal"] == "retry"

    gone = by_run[failed.metadata.run_id]
    assert "fallback" in gone["tags"]
    assert metadata(gone)["outcome"] == "failed"
    assert metadata(gone)["error_code"] == failed.error_code
    fallback = next(n for n in children(runs, gone) if n["name"] == "fallback")
    assert fallback["tags"].count("fallback") == 1


async def test_sampling_drops_clean_runs_but_keeps_failed_ones(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    boom = ModelCallError("400 invalid request", kind="degradable")
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(observability={"trace_sample_rate": 0.0})
        async with open_agent(settings, model=ScriptedModel(["a", "b", "c"])) as agent:
            for _ in range(3):
                assert (await agent.arun("hello")).success
        async with open_agent(settings, model=ScriptedModel([boom])) as agent:
            failed = await agent.arun("hello")
        runs = server.runs()
    kept = roots(runs)
    assert [metadata(r)["run_id"] for r in kept] == [failed.metadata.run_id]
    assert "failed" in metadata(kept[0])["keel_kept_because"]


async def test_full_payloads_keep_node_inputs(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(observability={"trace_payloads": "full"})
        async with open_agent(settings, model=ScriptedModel([AIMessage("hi")])) as agent:
            await agent.arun("hello")
        runs = server.runs()
    [root] = roots(runs)
    reason = next(n for n in children(runs, root) if n["name"] == "reason")
    assert "messages" in reason["inputs"]


async def test_tracing_off_sends_nothing_even_with_the_env_switch(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(observability={"tracing": "off"})
        async with open_agent(settings, model=ScriptedModel(["hi"])) as agent:
            assert not agent.tracing.enabled
            assert (await agent.arun("hello")).success
        await asyncio.sleep(0.3)
        assert server.requests == []


@pytest.mark.parametrize("mode", ["refused", "hang"])
async def test_a_dead_or_stalled_endpoint_never_fails_or_stalls_a_run(
    mode: str, settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    with CaptureServer(mode="hang") as hanging:
        if mode == "refused":
            with CaptureServer() as gone:
                url = gone.url  # closed on exit: connections are refused
        else:
            url = hanging.url
        langsmith_env(url)
        settings = settings_factory(observability={"trace_flush_timeout_s": 0.5})
        started = time.perf_counter()
        async with open_agent(settings, model=ScriptedModel(["a", "b"])) as agent:
            opened = time.perf_counter()
            assert agent.tracing.enabled
            first = await agent.arun("hello")
            run_time = time.perf_counter() - opened
            second = await agent.arun("hello again")
        total = time.perf_counter() - started
    assert first.success and second.success
    # Bounds with room for a loaded machine (the suite runs in parallel workers): a stall on
    # the endpoint would cost the client's timeouts (10 s and more); the exact 0.5 s bound
    # of the /info wait is tested in tests/unit/test_tracing_start.py.
    assert opened - started < 4.0, "opening waits at most 0.5 s for the server's /info"
    assert run_time < 3.0
    assert total < 8.0, f"closing the agent waited {total:.2f}s for a {mode} endpoint"


def test_the_cli_exits_promptly_when_the_endpoint_hangs(tmp_path: Any) -> None:
    """The LangSmith client's sender threads must not keep a finished process alive."""
    import json
    import os
    import subprocess
    import sys

    with CaptureServer(mode="hang") as hanging:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "LANGSMITH_"))}
        env.update(
            LANGSMITH_ENDPOINT=hanging.url,
            LANGSMITH_TRACING="true",
            LANGSMITH_API_KEY=FAKE_KEY,
            KEEL_HOME=str(tmp_path / "home"),
            KEEL_CHECKPOINT_URL="memory://",
            KEEL_OBSERVABILITY__TRACE_FLUSH_TIMEOUT_S="0.5",
        )
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "keel", "run", "--json", "--model", "scripted:echo", "hi"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["success"] is True
    assert elapsed < 15, f"the process took {elapsed:.1f}s to exit"
    assert FAKE_KEY not in done.stderr


async def test_a_run_served_from_the_cache_is_tagged_cached(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(
            model="scripted:sales", cache={"backend": "memory", "tool_results": True}
        )
        async with open_agent(settings) as agent:
            first = await agent.arun(SALES_QUESTION)
            second = await agent.arun(SALES_QUESTION)
        assert first.success and second.success
        runs = server.runs()
    by_run = {metadata(r)["run_id"]: r for r in roots(runs)}
    assert "cached" not in by_run[first.metadata.run_id]["tags"]
    assert "cached" in by_run[second.metadata.run_id]["tags"]


async def test_a_run_paused_for_approval_is_sent_as_unfinished(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    from keel.tools.registry import ToolRegistry, tool

    @tool(requires_approval=True)
    def transfer(account: str, amount: int) -> str:
        """Move money between accounts."""
        return f"moved {amount} to {account}"

    call = {"name": "transfer", "args": {"account": "A", "amount": 10}, "id": "c1"}
    model = ScriptedModel([AIMessage(content="", tool_calls=[call]), "moved"])
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(observability={"trace_sample_rate": 0.0})
        async with open_agent(settings, model=model, tools=ToolRegistry.of([transfer])) as agent:
            paused = await agent.arun("move money", thread_id="t-approve")
            done = await agent.aapprove("t-approve")
        assert paused.status == "interrupted" and done.success
        runs = server.runs()
    [kept] = roots(runs)  # the approved continuation is clean: sampled out at rate 0
    assert metadata(kept)["outcome"] == "unfinished"
    assert metadata(kept)["keel_kept_because"] == ["unfinished"]
    assert metadata(kept)["thread_id"] == "t-approve"

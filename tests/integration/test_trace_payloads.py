"""What a trace carries at each payload setting (issue 19: tracing's cost at the default).

Light payloads (the default) send one run per node, model call and tool call: no edge runs
(a routing function's run said only that it ran), and a model run names its bound tools
instead of repeating their schemas. Secrets stay masked everywhere, also in text repeated
across runs (each model run's prompt holds the conversation so far).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langsmith import utils as ls_utils

from keel.config import Settings
from keel.observability.redact import MASK
from keel.runtime import open_agent
from keel.testing.langsmith_capture import CaptureServer
from tests.sales_truth import SALES_QUESTION

FAKE_KEY = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"
SECRET = "sk-proj-trace0123456789abcdefSECRET"


@pytest.fixture
def langsmith_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def point(url: str) -> None:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
        monkeypatch.setenv("LANGSMITH_API_KEY", FAKE_KEY)
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_PROJECT", "keel-tests")
        ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]

    yield point
    monkeypatch.undo()
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]


async def _trace(
    settings_factory: Callable[..., Settings],
    langsmith_env: Callable[[str], None],
    payloads: str,
    question: str = SALES_QUESTION,
) -> list[dict[str, Any]]:
    with CaptureServer() as server:
        langsmith_env(server.url)
        settings = settings_factory(
            model="scripted:sales", observability={"trace_payloads": payloads}
        )
        async with open_agent(settings) as agent:
            result = await agent.arun(question)
        assert result.success
        return server.runs()


def _under_nodes(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    [root] = [r for r in runs if not r.get("parent_run_id")]
    nodes = {r["id"] for r in runs if r.get("parent_run_id") == root["id"]}
    return [r for r in runs if r.get("parent_run_id") in nodes]


async def test_light_payloads_send_no_edge_runs_and_name_the_tools(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    light = await _trace(settings_factory, langsmith_env, "light")
    full = await _trace(settings_factory, langsmith_env, "full")
    edges = {"route_after_reason", "route_after_act"}
    assert edges <= {r["name"] for r in full}  # they exist, and full payloads keep them
    assert not edges & {r["name"] for r in light}
    assert {r["run_type"] for r in _under_nodes(light)} == {"llm", "tool"}
    assert len(light) == 12  # root, 6 nodes, 3 model calls, 2 tool calls
    models = [r for r in light if r["run_type"] == "llm"]
    assert [m["extra"]["invocation_params"]["tools"] for m in models] == [
        ["sql_query", "calculator"]
    ] * 3
    [full_model, *_] = [r for r in full if r["run_type"] == "llm"]
    assert full_model["extra"]["invocation_params"]["tools"][0]["function"]["parameters"]


async def test_a_secret_repeated_in_every_prompt_is_masked_in_every_run(
    settings_factory: Callable[..., Settings], langsmith_env: Callable[[str], None]
) -> None:
    question = f"{SALES_QUESTION} (my key is {SECRET}, api_key={SECRET[:20]}XY)"
    runs = await _trace(settings_factory, langsmith_env, "light", question)
    sent = json.dumps(runs)
    assert SECRET not in sent and SECRET[:20] not in sent
    models = [r for r in runs if r["run_type"] == "llm"]
    assert len(models) == 3
    assert all(json.dumps(m["inputs"]).count(MASK) >= 2 for m in models)

"""What the LangSmith tracer sends, driven through its callbacks (issue 19: tracing's cost).

The tracer records each run as plain data while the graph runs and sends the tree, once,
when the root run ends: no LangSmith `RunTree` (a validated pydantic model) per callback.
Model prompts and replies are sent exactly as LangChain serialises them (`dumpd`), masked.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID, uuid4

import pytest
from langchain_core.load import dumpd
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, LLMResult
from langsmith.run_trees import RunTree

from keel.observability import TracePolicy, Tracing
from keel.observability.redact import MASK

SECRET = "sk-proj-records0123456789abcdefSECRET"


class Client:
    """Stands in for `langsmith.Client`: keeps what `create_run` is given."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def create_run(self, name: str, inputs: dict[str, Any], run_type: str, **kw: Any) -> None:
        self.runs.append({"name": name, "inputs": inputs, "run_type": run_type, **kw})


def _tracer(client: Client, payloads: Literal["full", "light"] = "light") -> Any:
    policy = TracePolicy(payloads=payloads)
    tracing = Tracing(enabled=True, client=client, project="p", policy=policy)
    [tracer] = tracing.callbacks({"run_id": "r-1", "tenant": "acme"})
    return tracer


PROMPT: list[BaseMessage] = [
    SystemMessage("You answer questions."),
    HumanMessage(f"Total? my key is {SECRET}", id="h1"),
    AIMessage(
        "",
        tool_calls=[{"name": "calculator", "args": {"expression": "1+2"}, "id": "c1"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        response_metadata={"model_name": "m"},
    ),
    ToolMessage("3", tool_call_id="c1", name="calculator", artifact={"rows": [1]}),
    AIMessageChunk(content="partial"),
    HumanMessage("escaped", additional_kwargs={"lc": 1, "note": "a user dict"}),
    AIMessage("", name="", invalid_tool_calls=[]),
]


def _model_call(tracer: Any, parent: UUID, reply: AIMessage, *, fail: bool = False) -> UUID:
    run_id = uuid4()
    tracer.on_chat_model_start(
        {"name": "ChatModel"},
        [PROMPT],
        run_id=run_id,
        parent_run_id=parent,
        metadata={"langgraph_node": "reason", "ls_model_name": "m"},
        invocation_params={"tools": [{"type": "function", "function": {"name": "calculator"}}]},
    )
    if fail:
        tracer.on_llm_error(RuntimeError("503 from provider"), run_id=run_id)
    else:
        result = LLMResult(generations=[[ChatGeneration(message=reply)]])
        tracer.on_llm_end(result, run_id=run_id)
    return run_id


def _graph_run(tracer: Any, reply: AIMessage, *, fail: bool = False) -> None:
    root, node = uuid4(), uuid4()
    tracer.on_chain_start(
        {}, {"question": "Total?", "messages": PROMPT}, run_id=root, name="LangGraph"
    )
    tracer.on_chain_start(
        {},
        {"iteration": 1, "messages": PROMPT},
        run_id=node,
        parent_run_id=root,
        name="reason",
        metadata={"langgraph_node": "reason"},
    )
    _model_call(tracer, node, reply, fail=fail)
    tracer.on_chain_end({"signal": "answer", "messages": [reply]}, run_id=node)
    outcome = {"success": not fail, "error_code": "model_error" if fail else None}
    tracer.on_chain_end({"outcome": outcome, "usage": {"total_tokens": 8}}, run_id=root)


def test_a_traced_run_builds_no_run_tree_and_sends_one_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    init = RunTree.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(RunTree, "__init__", counting)
    client = Client()
    _graph_run(_tracer(client), AIMessage("It is 3."))

    assert built == [], "the callbacks record plain data, not LangSmith run trees"
    assert [r["name"] for r in client.runs] == ["LangGraph", "reason", "ChatModel"]
    root, node, model = client.runs
    assert root["parent_run_id"] is None and node["parent_run_id"] == root["id"]
    assert model["parent_run_id"] == node["id"]
    assert {r["trace_id"] for r in client.runs} == {root["id"]}
    assert model["dotted_order"].startswith(node["dotted_order"] + ".")
    assert node["dotted_order"].startswith(root["dotted_order"] + ".")
    assert all(r["project_name"] == "p" and r["end_time"] for r in client.runs)
    assert root["extra"]["metadata"]["outcome"] == "success"
    assert root["extra"]["metadata"]["tenant"] == "acme"
    assert node["inputs"] == {"iteration": 1}, "light payloads: no copy of the state"


def test_model_messages_are_sent_as_dumpd_writes_them_with_secrets_masked() -> None:
    client = Client()
    reply = AIMessage(
        "It is 3.", usage_metadata={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}
    )
    _graph_run(_tracer(client, "full"), reply)
    [model] = [r for r in client.runs if r["run_type"] == "llm"]

    [sent] = model["inputs"]["messages"]
    assert len(sent) == len(PROMPT)
    for message, got in zip(PROMPT, sent, strict=True):
        want = dumpd(message)
        if message is PROMPT[1]:
            want["kwargs"]["content"] = f"Total? my key is {MASK}"
        assert got == want, type(message).__name__
    assert sent[5]["kwargs"]["additional_kwargs"] == {
        "__lc_escaped__": {"lc": 1, "note": "a user dict"}
    }
    [[generation]] = model["outputs"]["generations"]
    assert generation["message"] == dumpd(reply)
    assert generation["text"] == "It is 3."
    assert model["extra"]["metadata"]["usage_metadata"]["total_tokens"] == 13
    assert model["extra"]["invocation_params"]["tools"][0]["function"]["name"] == "calculator"


def test_a_failed_model_call_and_run_are_sent_with_their_errors() -> None:
    client = Client()
    tracer = _tracer(client)
    tracer.policy.sample_rate = 0.0  # failed runs are kept whatever the rate
    _graph_run(tracer, AIMessage("unused"), fail=True)
    by_name = {r["name"]: r for r in client.runs}
    assert "503 from provider" in by_name["ChatModel"]["error"]
    assert by_name["ChatModel"]["extra"]["invocation_params"]["tools"] == ["calculator"]
    meta = by_name["LangGraph"]["extra"]["metadata"]
    assert meta["outcome"] == "failed" and meta["error_code"] == "model_error"
    assert "failed" in meta["keel_kept_because"]

"""`keel.Agent`, the agent definition: its defaults, `with_config`, and its graph working
wherever a LangGraph graph works (plain `ainvoke` from messages, a thread of several runs,
a node of the caller's own graph) with the run context built from the definition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

import keel
from keel.checkpoints.adopt import adopt
from keel.config import Settings
from keel.errors import UsageError
from keel.graphs import build_agent_graph
from keel.testing.scripted import CallInfo, FunctionModel

SALES = "Which 3 products had the highest revenue last month?"


@keel.tool
def shout(text: str) -> str:
    """Say it louder."""
    return text.upper() + "!"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(model="scripted:sales")


def test_fields_left_none_come_from_the_settings(settings: Settings) -> None:
    plain = keel.Agent(name="plain")
    assert plain.settings_for(settings) is settings
    assert plain.registry().names() == ["sql_query", "calculator"]
    tuned = keel.Agent(
        name="tuned",
        model="scripted:echo",
        limits=keel.Limits(max_iterations=3),
        budget=keel.Budget(model_calls=5),
        approval=["calculator"],
    )
    applied = tuned.settings_for(settings)
    assert applied.model == "scripted:echo"
    assert applied.limits.max_iterations == 3
    assert applied.limits.run_timeout_s == settings.limits.run_timeout_s, "unset: settings'"
    assert applied.cost.run_model_calls == 5 and applied.cost.run_usd == settings.cost.run_usd
    assert applied.approval_tools == ("calculator",)


def test_a_bad_definition_is_refused_naming_what_is_wrong() -> None:
    with pytest.raises(UsageError, match="name"):
        keel.Agent(name=" ")
    with pytest.raises(UsageError, match=r"unknown tools.*'refund'"):
        keel.Agent(name="a", tools=[shout], approval=["refund"])
    with pytest.raises(UsageError, match="model spec"):
        keel.Agent(name="a", model="gpt-4o")
    with pytest.raises(UsageError, match="not a tool"):
        keel.Agent(name="a", tools=[42])  # type: ignore[list-item]


def test_with_config_applies_an_assistants_config_and_names_what_it_cannot() -> None:
    base = keel.Agent(name="a", tools=[shout, keel.calculator], limits=keel.Limits(max_repairs=1))
    changed = base.with_config(
        {"configurable": {"tools": ["shout"], "limits": {"max_iterations": 2}}, "model": "x:y"}
    )
    assert [t.name for t in changed.tools or ()] == ["shout"]
    assert changed.limits is not None and changed.limits.max_iterations == 2
    assert changed.limits.max_repairs == 1, "the definition's own limits are kept"
    assert changed.model == "x:y" and base.model is None, "the original is unchanged"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"temperature": 1}, "temperature"),
        ({"tools": ["sql_query"]}, "tools"),
        ({"limits": {"max_iterations": 0}}, "limits.max_iterations"),
        ({"limits": {"max_iterationz": 2}}, "limits"),
        ({"budget": {"usd": -1}}, "budget.usd"),
        ({"approval": ["nope"]}, "approval"),
    ]
    for config, field in cases:
        with pytest.raises(UsageError) as refused:
            base.with_config(config)
        assert field in refused.value.message, (config, refused.value.message)


async def test_the_graph_runs_from_messages_alone(settings: Settings) -> None:
    agent = keel.Agent(name="sales", model="scripted:sales")
    out = await agent.compile(settings=settings).ainvoke({"messages": [HumanMessage(SALES)]})
    assert out["outcome"]["success"], out["outcome"]
    assert "Laptop Basic" in out["outcome"]["output"]
    assert out["question"] == SALES and out["run_id"] and out["limits"]["max_iterations"] == 8
    assert out["policy"] == {"tools": ["sql_query", "calculator"], "approval": []}


async def test_a_thread_takes_a_new_run_per_message(settings: Settings) -> None:
    def reply(messages: list[Any], info: CallInfo) -> Any:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return f"Said: {last.content}"
        text = str(last.content)
        return AIMessage(
            content="", tool_calls=[{"name": "shout", "args": {"text": text}, "id": text}]
        )

    agent = keel.Agent(name="loud", tools=[shout], instructions="Shout everything.")
    graph = agent.compile(InMemorySaver(), settings=settings)
    config = RunnableConfig(configurable={"thread_id": "t"})
    context = await agent.build_context(settings, model=FunctionModel(fn=reply))
    assert context.system_prompt == "Shout everything."
    first = await graph.ainvoke({"messages": [("user", "hi")]}, config, context=context)
    second = await graph.ainvoke({"messages": [("user", "bye")]}, config, context=context)
    assert first["outcome"]["output"] == "Said: HI!"
    assert second["outcome"]["output"] == "Said: BYE!" and second["question"] == "bye"
    assert second["run_id"] != first["run_id"] and second["iteration"] == 1


async def test_the_graph_is_a_node_of_the_callers_own_graph(settings: Settings) -> None:
    agent = keel.Agent(name="sales", model="scripted:sales")
    parent = StateGraph(MessagesState)
    parent.add_node("analyst", agent.compile(settings=settings))
    parent.add_edge(START, "analyst")
    parent.add_edge("analyst", END)
    out = await parent.compile(checkpointer=InMemorySaver()).ainvoke(
        {"messages": [HumanMessage(SALES)]}, {"configurable": {"thread_id": "p"}}
    )
    assert "Laptop Basic" in str(out["messages"][-1].content)


async def test_a_graph_without_a_definition_says_how_to_get_its_context() -> None:
    graph = build_agent_graph().compile()
    with pytest.raises(UsageError, match=r"keel\.Agent"):
        await graph.ainvoke({"messages": [HumanMessage("hi")]})


async def test_open_agent_takes_a_definition_or_settings_as_before(
    settings: Settings, tmp_path: Path
) -> None:
    loud = keel.Agent(name="loud", tools=[shout], instructions="Shout.")
    async with keel.open_agent(loud, settings=settings) as bound:
        assert isinstance(bound, keel.AgentRuntime) and bound.definition is loud
        assert bound.context.system_prompt == "Shout."
        assert bound.context.tools.names() == ["shout"]
    async with keel.open_agent(settings) as bound:  # the old call: the data assistant
        assert bound.definition is not None and bound.definition.name == "data_analyst"
        assert "sql_query" in bound.context.system_prompt, "the schema is appended"
        result = await bound.arun(SALES)
    assert result.success and "Laptop Basic" in result.output


async def test_the_graph_streams_and_runs_under_a_parent_with_its_own_context(
    settings: Settings,
) -> None:
    """A parent graph's context is the caller's, not Keel's: the agent builds its own."""

    @dataclass
    class Mine:
        user: str

    agent = keel.Agent(name="sales", model="scripted:sales")
    parent = StateGraph(MessagesState, context_schema=Mine)
    parent.add_node("analyst", agent.compile(settings=settings))
    parent.add_edge(START, "analyst")
    parent.add_edge("analyst", END)
    nodes: list[str] = []
    async for chunk in parent.compile().astream(
        {"messages": [HumanMessage(SALES)]},
        context=Mine(user="ann"),
        stream_mode="updates",
        subgraphs=True,
    ):
        namespace, update = chunk
        nodes.extend(f"{'/'.join(n.split(':')[0] for n in namespace)}>{k}" for k in update)
    assert nodes[:2] == ["analyst>reason", "analyst>act"]
    assert nodes[-2:] == ["analyst>finish", ">analyst"]


async def test_the_graph_runs_from_a_question_and_refuses_no_question(
    settings_factory: Callable[..., Settings],
) -> None:
    graph = keel.Agent(name="echo").compile(settings=settings_factory(model="scripted:echo"))
    out = await graph.ainvoke({"question": "red"})
    assert out["outcome"]["output"] == "You asked: red"
    assert [m.content for m in out["messages"]] == ["red", "You asked: red"]
    with pytest.raises(UsageError, match="needs a question"):
        await graph.ainvoke({"messages": []})


async def test_a_subgraphs_side_effects_are_journaled_in_the_parents_saver(
    settings_factory: Callable[..., Settings],
) -> None:
    sent: list[str] = []

    @keel.tool
    def send(to: str) -> str:
        """Send a letter (a side effect: not idempotent)."""
        sent.append(to)
        return f"sent to {to}"

    def reply(messages: list[Any], info: CallInfo) -> Any:
        if isinstance(messages[-1], ToolMessage):
            return "Done."
        return AIMessage(
            content="", tool_calls=[{"name": "send", "args": {"to": "ann"}, "id": "s1"}]
        )

    agent = keel.Agent(name="post", tools=[send])
    parent = StateGraph(MessagesState)
    parent.add_node(
        "post", agent.compile(settings=settings_factory(), model=FunctionModel(fn=reply))
    )
    parent.add_edge(START, "post")
    parent.add_edge("post", END)
    saver = InMemorySaver()
    out = await parent.compile(checkpointer=saver).ainvoke(
        {"messages": [HumanMessage("write to ann")]},
        RunnableConfig(configurable={"thread_id": "p"}),
    )
    assert out["messages"][-1].content == "Done." and sent == ["ann"]
    storage = await adopt(saver)
    assert storage is not None and storage.journal is not None
    entry = await storage.journal.get(keel.ToolContext.key_for("p", "s1"))
    assert entry is not None and entry.status == "completed" and entry.result == "sent to ann"

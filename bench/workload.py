"""One agent workload, run the same way by Keel and by raw LangGraph, for the benchmarks.

The scripted model makes six calls a run: five tool calls (three `sql_query`, two
`calculator`, one per call) on the sample sales database, then an answer built only from
the tool results (so Keel's grounding check passes it first time). Both sides get the same
replies, the same tool functions and the same system prompt:

- `keel`: `open_agent` with the default safeguards, `durability="sync"`, logging at warning,
  the tool-result cache off (a cached `calculator` result would skip work raw LangGraph does);
- `textbook`: raw LangGraph's loop — `StateGraph(MessagesState)`, a model node,
  `ToolNode`, `tools_condition` — on the stock saver;
- `create_agent`: langchain v1's `create_agent` on the stock saver.

The stock savers are `InMemorySaver`, `AsyncSqliteSaver` and `AsyncPostgresSaver` (one
connection, as `from_conn_string` opens it); each side writes to its own SQLite file or
Postgres database, so their tables never mix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from keel.config import Settings, load_settings
from keel.runtime import open_agent
from keel.runtime.context import system_prompt_for
from keel.testing.policies import TOP_PRODUCTS_SQL
from keel.testing.scripted import CallInfo, FunctionModel
from keel.tools import ToolContext, ToolRegistry, calculator, sql_query

__all__ = [
    "MODEL_CALLS",
    "QUESTION",
    "SIDES",
    "TOOL_CALLS",
    "Run",
    "Side",
    "keel_settings",
    "runner",
    "script",
    "widened_state",
]

QUESTION = "Which 3 products had the highest revenue last month, and what was their total revenue?"
MODEL_CALLS = 6
TOOL_CALLS = 5
Side = Literal["keel", "textbook", "create_agent"]
SIDES: tuple[Side, ...] = ("keel", "textbook", "create_agent")
Run = Callable[[str], Awaitable[None]]

ORDERS_SQL = "SELECT COUNT(*) AS orders FROM orders WHERE status = 'completed'"
PRODUCTS_SQL = "SELECT COUNT(*) AS products FROM products"


def _call(name: str, args: dict[str, Any], n: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}"}])


def script(messages: list[BaseMessage], info: CallInfo) -> AIMessage | str:
    """The reply to the conversation so far: the next tool call, or (after five tool
    results) the answer. A function of the tool results alone, so both sides get the
    same replies whatever else their prompts hold."""
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    seen = [str(m.content) for m in messages[start:] if isinstance(m, ToolMessage)]
    if not seen:
        return _call("sql_query", {"query": TOP_PRODUCTS_SQL}, 0)
    rows = json.loads(seen[0])["rows"]
    if len(seen) == 1:
        expression = " + ".join(str(r[1]) for r in rows) or "0"
        return _call("calculator", {"expression": expression}, 1)
    if len(seen) == 2:
        return _call("sql_query", {"query": ORDERS_SQL}, 2)
    if len(seen) == 3:
        return _call("sql_query", {"query": PRODUCTS_SQL}, 3)
    if len(seen) == 4:
        return _call("calculator", {"expression": f"{seen[1]} / {max(len(rows), 1)}"}, 4)
    ranked = "; ".join(f"{i}. {r[0]} (${r[1]})" for i, r in enumerate(rows, 1))
    return (
        f"The top {len(rows)} products by revenue last month were: {ranked}. "
        f"Their total revenue was {seen[1]} (on average {seen[4]})."
    )


def keel_settings(
    url: str, home: Path, limits: dict[str, Any] | None = None, durability: str = "sync"
) -> Settings:
    """Keel's settings for the workload; `limits` overrides some of the run limits. When it
    sets timeouts (the many-runs benches), the SQL tool's statement timeout is as long as the
    longest, on both sides (they share the tool): a thousand runs at once under callgrind
    kept queries waiting past its default 5 s."""
    timeouts = [float(v) for k, v in (limits or {}).items() if k.endswith("_timeout_s")]
    sql = {"statement_timeout_s": max(timeouts)} if timeouts else {}
    return load_settings(
        model="scripted:sales",
        checkpoint_url=url,
        durability=durability,
        home=home,
        observability={"log_level": "warning"},
        cache={"tool_results": False},
        **({"limits": limits} if limits else {}),
        **({"sql": sql} if sql else {}),
    )


def _tools() -> ToolRegistry:
    return ToolRegistry.of([sql_query, calculator])


def langchain_tools(settings: Settings) -> list[BaseTool]:
    """Keel's two tools as plain LangChain tools: the same functions and schemas, called
    directly (a sync function, so LangChain runs it in a worker thread, as Keel does)."""

    def run_sql(query: str) -> str:
        return str(sql_query.func(query=query, ctx=ToolContext(settings, tool_call_id="raw")))

    def run_calculator(expression: str) -> str:
        return str(calculator.func(expression=expression))

    return [
        StructuredTool.from_function(
            func=fn, name=t.name, description=t.description, args_schema=t.args_schema
        )
        for fn, t in ((run_sql, sql_query), (run_calculator, calculator))
    ]


def textbook_graph(
    model: FunctionModel, tools: list[BaseTool], system: str, *, state: Any = MessagesState
) -> StateGraph[Any, Any, Any, Any]:
    """The loop from LangGraph's docs: model node, `ToolNode`, `tools_condition` (over
    `state`, a schema with a `messages` key)."""
    bound = model.bind_tools(tools)
    prompt = [SystemMessage(system)] if system else []

    async def agent(state: Any) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke([*prompt, *state["messages"]])]}

    graph = StateGraph(state)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph


def widened_state(extra_keys: int) -> Any:
    """`MessagesState` with `extra_keys` more `str` keys (`k0`, `k1`, …): one more state
    channel each."""
    fields: dict[str, Any] = {"messages": MessagesState.__annotations__["messages"]}
    fields.update({f"k{i}": str for i in range(extra_keys)})
    return TypedDict("WidenedState", fields)  # type: ignore[operator]


@asynccontextmanager
async def stock_saver(url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The stock saver for a URL, opened the way LangGraph's docs open it."""
    if url.startswith("memory://"):
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif url.startswith("sqlite:///"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(url.removeprefix("sqlite:///")) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver


def _check(answer: Any) -> None:
    if not (isinstance(answer, str) and answer.startswith("The top ")):
        raise AssertionError(f"the run did not end with the scripted answer: {answer!r}")


@asynccontextmanager
async def runner(
    side: Side,
    url: str,
    home: Path,
    *,
    latency_s: float = 0.0,
    limits: dict[str, Any] | None = None,
    extra_keys: int = 0,
) -> AsyncIterator[Run]:
    """A coroutine that runs the workload once on a new thread, on `side`; every model
    call waits `latency_s` first (a provider's latency); `limits` overrides Keel's run
    limits (the raw sides have none). `extra_keys` gives the textbook loop's state that many
    more `str` keys, set in the input (`bench.state_channels`)."""
    if extra_keys and side != "textbook":
        raise ValueError("extra_keys widens the textbook loop's state only")
    settings = keel_settings(url, home, limits)
    model = FunctionModel(fn=script, latency_s=latency_s)
    async with AsyncExitStack() as stack:
        if side == "keel":
            agent = await stack.enter_async_context(
                open_agent(settings, model=model, tools=_tools())
            )

            async def run_keel(thread_id: str) -> None:
                result = await agent.arun(QUESTION, thread_id=thread_id)
                if result.metadata.model_calls != MODEL_CALLS:
                    raise AssertionError(f"Keel made {result.metadata.model_calls} calls")
                _check(result.output)

            yield run_keel
            return
        saver = await stack.enter_async_context(stock_saver(url))
        tools = langchain_tools(settings)
        system = await system_prompt_for(settings, _tools())
        if side == "textbook":
            state = widened_state(extra_keys) if extra_keys else MessagesState
            graph: Any = textbook_graph(model, tools, system, state=state)
            graph = graph.compile(checkpointer=saver)
        else:
            from langchain.agents import create_agent

            graph = create_agent(model, tools, system_prompt=system, checkpointer=saver)

        extra = {f"k{i}": f"value {i}" for i in range(extra_keys)}

        async def run_raw(thread_id: str) -> None:
            out = await graph.ainvoke(
                {"messages": [HumanMessage(QUESTION)], **extra},
                {"configurable": {"thread_id": thread_id}},
                durability="sync",
            )
            messages = out["messages"]
            calls = sum(isinstance(m, AIMessage) for m in messages)
            if calls != MODEL_CALLS:
                raise AssertionError(f"{side} made {calls} model calls")
            _check(messages[-1].content)

        yield run_raw


def new_thread() -> str:
    return uuid.uuid4().hex

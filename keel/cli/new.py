"""`keel new DIR`: a small project that `keel run --agent` and `keel serve` run at once.

One agent (`agent.py`) with one tool of its own (`tools.py`), the `langgraph.json` naming it,
a test driving it with a scripted model (no network, no key) and a README.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer

from keel.cli._common import app, err, fail, literal

__all__ = ["TEMPLATE", "write_project"]

TEMPLATE: dict[str, str] = {
    "langgraph.json": """
        {
          "dependencies": ["."],
          "graphs": {
            "support": "./agent.py:support"
          }
        }
    """,
    "agent.py": '''
        """The agent: its instructions, its tools and (optionally) its model and limits.

        Run it:   keel run --agent support "Where is order A-1001?"
        Serve it: keel serve      (graph id "support", the Agent Server protocol)
        """

        import keel

        from tools import order_status

        support = keel.Agent(
            name="support",
            description="Answers questions about a customer's orders.",
            instructions=(
                "You are the support assistant of a small online shop. Look orders up with "
                "order_status before answering, and answer in one or two sentences."
            ),
            tools=[order_status],
            # model="openai:gpt-4o-mini",   # default: KEEL_MODEL, or --model on the command line
        )
    ''',
    "tools.py": '''
        """The agent's tools: plain functions. The model sees the name, docstring and types."""

        import keel

        ORDERS = {
            "A-1001": "shipped on Monday, arriving Thursday",
            "A-1002": "being packed, ships tomorrow",
        }


        @keel.tool(idempotent=True)
        def order_status(order_id: str) -> str:
            """The shipping status of one order, by its id (like A-1001)."""
            status = ORDERS.get(order_id.strip().upper())
            if status is None:
                raise ValueError(f"no order {order_id}")  # the model reads this and can retry
            return status
    ''',
    "test_agent.py": '''
        """The agent driven by a scripted model: no network, no API key. Run: pytest -q"""

        import asyncio

        from langchain_core.messages import AIMessage, ToolMessage

        import keel
        from agent import support
        from keel.testing import FunctionModel


        def script(messages, info):
            """Call order_status once, then answer with what it said."""
            said = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
            if not said:
                call = {"name": "order_status", "args": {"order_id": "A-1001"}, "id": "call_1"}
                return AIMessage(content="", tool_calls=[call])
            return f"Order A-1001 is {said[-1]}."


        async def ask(question):
            settings = keel.load_settings(checkpoint_url="memory://")
            model = FunctionModel(fn=script)
            async with keel.open_agent(support, settings=settings, model=model) as agent:
                return await agent.arun(question)


        def test_the_agent_looks_the_order_up():
            result = asyncio.run(ask("Where is my order A-1001?"))
            assert result.success, result.error
            assert result.output == "Order A-1001 is shipped on Monday, arriving Thursday."
            acted = [step["action"] for step in result.metadata.trace if step["node"] == "act"]
            assert acted == ["order_status"]
    ''',
    "README.md": """
        # {name}

        A Keel agent: `agent.py` defines it, `tools.py` holds its tool, `langgraph.json`
        names it (the LangGraph CLI's format).

        ```bash
        pytest -q                                               # the scripted test
        keel run --agent support "Where is order A-1001?"       # needs KEEL_MODEL (or --model)
        keel serve                                              # the Agent Server API
        ```
        Add tools to `tools.py` and list them in `agent.py`; add agents or any LangGraph
        graph under `"graphs"` in `langgraph.json`, and `keel agents` lists them.
    """,
}


def write_project(folder: Path) -> list[Path]:
    """Write the template into `folder` (created if missing); refuse a non-empty folder."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in TEMPLATE.items():
        body = textwrap.dedent(text).lstrip()
        if name == "README.md":
            body = body.replace("{name}", folder.resolve().name)
        path = folder / name
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


@app.command()
def new(
    folder: Annotated[Path, typer.Argument(help="Folder for the project (new or empty).")],
) -> None:
    """Write a small project: one agent with one tool, its langgraph.json, a test, a README."""
    try:
        written = write_project(folder)
    except FileExistsError as exc:
        raise fail(f"{folder} is not an empty folder; choose a new one", 2) from exc
    except OSError as exc:
        raise fail(f"cannot write {folder}: {exc}", 2) from exc
    for path in written:
        err.print(literal(str(path), "wrote", "green"))
    err.print(
        literal(
            f'next: cd {folder} && pytest -q && keel run --agent support "Where is order A-1001?"'
        )
    )

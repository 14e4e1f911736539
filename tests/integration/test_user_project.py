"""A user's project with its own `tools.py`, `nodes.py`, `checkpoints.py` and `graphs/`.

Before the layout change Keel installed `tools`, `nodes`, `graphs` and `checkpoints` as
top-level packages, so a project with a module of one of those names shadowed Keel's own
(`'tools' is not a package`). Now only `keel` is installed at the top level; the project runs
as a user runs it: `python main.py` from the project folder, repository not on `sys.path`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import keel
from keel.tools.sample_db import ensure_sample_db
from tests.sales_truth import SALES_QUESTION, top_products

REPO = Path(__file__).resolve().parents[2]

PROJECT = {
    "tools.py": '''
        """The project's own tools: a module named like one of Keel's folders."""
        import keel


        @keel.tool(idempotent=True, isolation="process")
        def shout(text: str) -> str:
            """Repeat the text in capitals."""
            return text.upper() + "!"
    ''',
    "nodes.py": '''
        """The project's scripted model: call `shout` once, then answer with what it said."""
        from langchain_core.messages import AIMessage, ToolMessage


        def policy(messages, info):
            said = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
            if not said:
                call = {"name": "shout", "args": {"text": "hello"}, "id": "call_shout"}
                return AIMessage(content="", tool_calls=[call])
            return f"The tool said {said[0]}"
    ''',
    "checkpoints.py": '''
        """The project's own checkpoint settings."""
        URL = "memory://"
    ''',
    "graphs/__init__.py": '''
        """The project's own graphs package: it reads Keel's agent graph."""
        import keel


        def node_names():
            return sorted(keel.build_agent_graph().nodes)
    ''',
    "main.py": """
        import asyncio
        import json
        import sys

        import checkpoints
        import graphs
        import nodes
        import tools

        import keel
        from keel.testing import FunctionModel


        async def own_agent():
            registry = keel.default_tools()
            registry.register(tools.shout)
            settings = keel.load_settings(checkpoint_url=checkpoints.URL)
            model = FunctionModel(fn=nodes.policy)
            async with keel.open_agent(settings, model=model, tools=registry) as agent:
                return await agent.arun("Say hello, loudly.")


        sales = keel.run(sys.argv[1], model="scripted:sales")
        own = asyncio.run(own_agent())
        names = ("keel", "tools", "nodes", "graphs", "checkpoints")
        print(json.dumps({
            "files": {name: sys.modules[name].__file__ for name in names},
            "sys_path": sys.path,
            "graph_nodes": graphs.node_names(),
            "sales": sales.to_dict(),
            "own": own.to_dict(),
        }, default=str))
    """,
}


def write_project(root: Path) -> None:
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def run_project(root: Path) -> dict[str, Any]:
    """`python main.py` in the project folder, with a clean environment (no PYTHONPATH)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LANG": "C.UTF-8"}
    done = subprocess.run(
        [sys.executable, "main.py", SALES_QUESTION],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_project_with_its_own_tools_module_runs_an_agent(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_project(project)
    result = run_project(project)

    # The premise: the repository is not importable from the project, only the install is.
    assert not any(Path(p or ".").resolve() == REPO for p in result["sys_path"])
    files = {name: Path(file).resolve() for name, file in result["files"].items()}
    assert files["keel"] == Path(keel.__file__).resolve()
    for own in ("tools", "nodes", "graphs", "checkpoints"):
        assert files[own].is_relative_to(project), (own, files[own])

    sales = result["sales"]
    assert sales["success"], sales["error"]
    truth = top_products(ensure_sample_db(project / ".keel"), date.today())
    for product, _revenue in truth:
        assert product in sales["output"]

    # The project's own tool ran in a child process that imported the project's `tools`.
    own = result["own"]
    assert own["success"], own["error"]
    assert own["output"] == "The tool said HELLO!"
    assert result["graph_nodes"] == ["act", "fallback", "finish", "observe", "reason"]


def test_the_install_puts_only_keel_at_the_top_level() -> None:
    top_level = distribution("keel").read_text("top_level.txt")
    assert top_level is not None
    assert top_level.split() == ["keel"]

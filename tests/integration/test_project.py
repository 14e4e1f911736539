"""`load_project`: a user's `langgraph.json` (the LangGraph CLI's format) read, imported and
checked at start-up; every mistake is a ConfigError naming the file, the key and the fix."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from keel.errors import ConfigError
from keel.project import load_project, open_factory_graph

GRAPH_FILE = '''
    """A plain LangGraph project: the graph's node uses the project's own tools.py."""
    import os

    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from tools import shout


    def reply(state):
        text = shout(state["messages"][-1].content)
        return {"messages": [AIMessage(f"{os.environ.get('G2_GREETING', 'hi')} {text}")]}


    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    compiled = builder.compile()
    NOT_A_GRAPH = {"nodes": 1}
    count = 3


    def make_graph(config):
        """A factory taking the run's config."""
        return builder.compile()


    async def make_graph_async():
        """An async factory taking nothing, returning the uncompiled builder."""
        return builder


    def two_args(config, extra):
        return builder


    class Holder:
        pass
'''

TOOLS_FILE = '''
    """The project's own module named like a Keel folder."""


    def shout(text):
        return text.upper() + "!"
'''


@pytest.fixture
def isolated() -> Iterator[None]:
    """load_project edits sys.path, os.environ and sys.modules, the tests the working
    directory: restore them (a later test running `keel` finds the repository's file)."""
    path, modules, env, cwd = list(sys.path), set(sys.modules), dict(os.environ), os.getcwd()
    yield
    os.chdir(cwd)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    os.environ.clear()
    os.environ.update(env)


def write(root: Path, config: Any, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in {"graph.py": GRAPH_FILE, "tools.py": TOOLS_FILE, **(files or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    path = root / "langgraph.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


async def ask(graph: Pregel[Any, Any, Any, Any], text: str) -> str:
    bound = graph.copy(update={"checkpointer": InMemorySaver()})
    config = RunnableConfig(configurable={"thread_id": "t"})
    out = await bound.ainvoke({"messages": [HumanMessage(text)]}, config)
    return str(out["messages"][-1].content)


async def test_graphs_of_every_kind_load_and_run(tmp_path: Path, isolated: None) -> None:
    config = write(
        tmp_path / "proj",
        {
            "dependencies": ["."],
            "graphs": {
                "builder": "./graph.py:builder",
                "compiled": {"path": "./graph.py:compiled", "description": "the compiled one"},
                "factory": "./graph.py:make_graph",
                "async_factory": "./graph.py:make_graph_async",
            },
            "env": {"G2_GREETING": "hello"},
            "python_version": "3.11",
            "dockerfile_lines": [],
            "http": {"cors": {}},
        },
    )
    os.chdir(tmp_path)  # not the project folder: paths resolve against the file's folder
    project = load_project(config)
    kinds = {gid: e.kind for gid, e in project.graphs.items()}
    assert kinds == {
        "builder": "graph",
        "compiled": "graph",
        "factory": "factory",
        "async_factory": "factory",
    }
    assert project.graphs["compiled"].description == "the compiled one"
    assert project.default.graph_id == "builder"  # no Keel agent: the first graph
    assert "python_version, dockerfile_lines, http" in project.notes[0]
    assert await ask(project.graphs["builder"].graph, "abc") == "hello ABC!"  # type: ignore[arg-type]
    for gid in ("factory", "async_factory"):
        async with open_factory_graph(project.graphs[gid], RunnableConfig()) as graph:
            assert await ask(graph, "xy") == "hello XY!"
    # one module for the file: the two ids share its objects
    modules = [
        m
        for m in sys.modules.values()
        if getattr(m, "__file__", "") == str(config.parent / "graph.py")
    ]
    assert len(modules) == 1


def test_env_file_fills_only_unset_variables(tmp_path: Path, isolated: None) -> None:
    config = write(tmp_path, {"graphs": {"g": "./graph.py:compiled"}, "env": "./.env"})
    (tmp_path / ".env").write_text("G2_FROM_FILE=file\nG2_ALREADY=file\n")
    os.environ["G2_ALREADY"] = "shell"
    project = load_project(config)
    assert os.environ["G2_FROM_FILE"] == "file"
    assert os.environ["G2_ALREADY"] == "shell"
    assert any("kept: G2_ALREADY" in note for note in project.notes)


def test_a_missing_env_file_is_a_note(tmp_path: Path, isolated: None) -> None:
    config = write(tmp_path, {"graphs": {"g": "./graph.py:compiled"}, "env": ".env"})
    project = load_project(config)
    assert any("env: '.env' not found" in note for note in project.notes)


def test_module_form_imports_from_a_dependency_folder(tmp_path: Path, isolated: None) -> None:
    files = {"src/my_pkg/__init__.py": "", "src/my_pkg/graphs.py": GRAPH_FILE}
    config = write(
        tmp_path, {"dependencies": ["./src"], "graphs": {"g": "my_pkg.graphs:compiled"}}, files
    )
    project = load_project(config)
    assert project.graphs["g"].kind == "graph"
    assert project.graphs["g"].source == "my_pkg.graphs:compiled"


def test_without_a_file_the_built_in_agent_under_both_ids(tmp_path: Path, isolated: None) -> None:
    os.chdir(tmp_path)
    project = load_project()
    assert project.path is None
    assert list(project.graphs) == ["data_analyst", "agent"]
    assert {e.kind for e in project.graphs.values()} == {"keel"}
    assert project.default.graph_id == "data_analyst"


BAD: list[tuple[str, Any, str, str]] = [
    # (case, langgraph.json content, the key named, words of the fix)
    (
        "not json",
        '{"graphs": {"g": "./graph.py:compiled",}}',
        "not valid JSON (line 1",
        "correct the JSON",
    ),
    ("not an object", "[1, 2]", "one JSON object", '"graphs"'),
    ("no graphs", {"dependencies": ["."]}, "graphs: the key is missing", 'add "graphs"'),
    ("empty graphs", {"graphs": {}}, "graphs: must map at least one", 'write "graphs"'),
    (
        "no attribute",
        {"graphs": {"g": "./graph.py"}},
        "graphs.g: './graph.py' does not name an attribute",
        "./graph.py:agent",
    ),
    ("not a string", {"graphs": {"g": 7}}, "graphs.g: expected a string", "./file.py:attribute"),
    (
        "missing file",
        {"graphs": {"g": "./nope.py:graph"}},
        "graphs.g: file './nope.py' not found",
        "relative to the folder of langgraph.json",
    ),
    (
        "missing attribute",
        {"graphs": {"g": "./graph.py:grpah"}},
        "graphs.g: './graph.py' has no attribute 'grpah' (it defines:",
        "module-level variable",
    ),
    (
        "missing module",
        {"graphs": {"g": "no_such_pkg.graphs:g"}},
        "graphs.g: importing 'no_such_pkg.graphs' failed: no module named 'no_such_pkg'",
        '"dependencies"',
    ),
    (
        "a dict",
        {"graphs": {"g": "./graph.py:NOT_A_GRAPH"}},
        "graphs.g: './graph.py:NOT_A_GRAPH' is a dict, not a graph",
        "a compiled graph (builder.compile())",
    ),
    ("an int", {"graphs": {"g": "./graph.py:count"}}, "is a int, not a graph", "keel.Agent"),
    (
        "a class",
        {"graphs": {"g": "./graph.py:Holder"}},
        "is the class Holder, not a graph",
        "a StateGraph",
    ),
    (
        "factory arity",
        {"graphs": {"g": "./graph.py:two_args"}},
        "graphs.g: the factory './graph.py:two_args' takes (config, extra)",
        "one argument, the run's RunnableConfig",
    ),
    (
        "duplicate id",
        '{"graphs": {"g": "./graph.py:compiled", "g": "./graph.py:builder"}}',
        "g: the key appears twice",
        "give the second graph another id",
    ),
    (
        "env type",
        {"graphs": {"g": "./graph.py:compiled"}, "env": 3},
        "env: must be a path to a .env file or a mapping",
        '"env": "./.env"',
    ),
    (
        "env value",
        {"graphs": {"g": "./graph.py:compiled"}, "env": {"A": [1]}},
        "env.A: must be a string",
        "as text",
    ),
    (
        "dependencies type",
        {"graphs": {"g": "./graph.py:compiled"}, "dependencies": "."},
        "dependencies: must be a list of strings",
        '["."]',
    ),
    (
        "dependency folder",
        {"graphs": {"g": "./graph.py:compiled"}, "dependencies": ["./lib"]},
        "dependencies[0]: './lib' is not a folder",
        '"." is the project folder',
    ),
    (
        "import error",
        {"graphs": {"g": "./broken.py:g"}},
        "graphs.g: importing './broken.py' failed: ZeroDivisionError",
        "python ./broken.py",
    ),
]


@pytest.mark.parametrize(("case", "content", "problem", "fix"), BAD, ids=[b[0] for b in BAD])
def test_each_mistake_names_file_key_and_fix(
    tmp_path: Path, isolated: None, case: str, content: Any, problem: str, fix: str
) -> None:
    config = write(tmp_path, content, {"broken.py": "g = 1 / 0\n"})
    with pytest.raises(ConfigError) as caught:
        load_project(config)
    message = caught.value.message
    assert message.startswith(f"{config}: "), message
    assert problem in message, message
    assert "; fix: " in message and fix in message.split("; fix: ", 1)[1], message


def test_a_missing_config_file(tmp_path: Path, isolated: None) -> None:
    with pytest.raises(ConfigError, match=r"langgraph.json: no such file; fix: .*--config"):
        load_project(tmp_path / "langgraph.json")


def test_the_repositorys_own_file_serves_the_built_in_agent(isolated: None) -> None:
    from keel.graphs.data_analyst import agent as builtin

    project = load_project(Path(__file__).resolve().parents[2] / "langgraph.json")
    assert next(iter(project.graphs)) == "data_analyst"
    assert "agent" in project.graphs  # the old id kept
    # imported under its own name, not a second copy under a project module name
    assert project.graphs["data_analyst"].agent is builtin
    assert project.graphs["agent"].agent is builtin
    assert project.default.graph_id == "data_analyst"

"""A user's project driven through the `keel` command in a subprocess: `keel agents` lists its
graphs, `keel run --agent` runs each (plain LangGraph graphs with Keel's checkpointer), and a
bad `langgraph.json` stops the command with the file, the key and the fix."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest

from keel.tools.sample_db import ensure_sample_db
from tests.cli_runner import KeelCli, keel_runner
from tests.sales_truth import SALES_QUESTION, top_products

FILES = {
    "tools.py": '''
        """The project's own tools module (a name Keel once installed at the top level)."""


        def shout(text: str) -> str:
            """Repeat the text in capitals."""
            return text.upper() + "!"
    ''',
    "graphs.py": '''
        """Plain LangGraph graphs: no Keel in them."""
        import os

        from langchain_core.messages import AIMessage
        from langgraph.graph import START, MessagesState, StateGraph
        from langgraph.types import interrupt

        from tools import shout


        def reply(state):
            said = shout(state["messages"][-1].content)
            greeting = os.environ.get("G2_GREETING", "?")
            return {"messages": [AIMessage(f"{greeting} {said} ({len(state['messages'])})")]}


        def ask_first(state):
            answer = interrupt({"question": "sure?"})
            return {"messages": [AIMessage(f"you said {answer}")]}


        builder = StateGraph(MessagesState)
        builder.add_node("reply", reply)
        builder.add_edge(START, "reply")

        asking = StateGraph(MessagesState)
        asking.add_node("ask_first", ask_first)
        asking.add_edge(START, "ask_first")


        async def make_echo(config):
            """A factory: a graph per run, named by the run's config."""
            return builder.compile()
    ''',
    ".env": "G2_GREETING=hello\nKEEL_MODEL=scripted:echo\n",
}

CONFIG = {
    "dependencies": ["."],
    "graphs": {
        "echo": {"path": "./graphs.py:builder", "description": "Shouts back."},
        "made": "./graphs.py:make_echo",
        "asking": "./graphs.py:asking",
    },
    "env": "./.env",
    "python_version": "3.11",
}


def make_project(root: Path, config: object = CONFIG) -> Path:
    root.mkdir(parents=True)
    for name, text in FILES.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    path = root / "langgraph.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


@pytest.fixture
def keel(tmp_path: Path) -> KeelCli:
    return keel_runner(tmp_path)


def test_keel_agents_lists_the_projects_graphs(tmp_path: Path, keel: KeelCli) -> None:
    config = make_project(tmp_path / "proj")
    done = keel("agents", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["config"] == str(config)
    rows = {(r["graph_id"], r["kind"], r["source"], r["description"]) for r in listed["graphs"]}
    assert rows == {
        ("echo", "graph", "./graphs.py:builder", "Shouts back."),
        ("made", "factory", "./graphs.py:make_echo", ""),
        ("asking", "graph", "./graphs.py:asking", ""),
    }
    table = keel("agents", "--config", str(config))
    assert table.returncode == 0
    assert "echo (default)" in table.stdout and "./graphs.py:make_echo" in table.stdout
    assert "ignored (Keel reads only graphs, env, dependencies): python_version" in table.stderr


def test_run_a_plain_graph_with_keels_checkpointer(tmp_path: Path, keel: KeelCli) -> None:
    config = make_project(tmp_path / "proj")
    args = ("run", "--config", str(config), "--agent", "echo", "--thread", "t1")
    first = keel(*args, "abc")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "hello ABC! (1)"  # the .env and the project's tools.py
    again = keel(*args, "--json", "def")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    # the thread's first turn came back from the SQLite checkpoint: three messages now
    assert result == {
        "graph_id": "echo",
        "thread_id": "t1",
        "output": "hello DEF! (3)",
        "interrupts": [],
        "next": [],
    }
    assert (tmp_path / "cp.sqlite").is_file()


def test_the_shell_beats_the_env_file_and_a_factory_runs(tmp_path: Path, keel: KeelCli) -> None:
    config = make_project(tmp_path / "proj")
    done = keel("run", "--config", str(config), "--agent", "made", "x", G2_GREETING="shell")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "shell X! (1)"


def test_a_graph_waiting_at_an_interrupt_exits_3(tmp_path: Path, keel: KeelCli) -> None:
    config = make_project(tmp_path / "proj")
    done = keel("run", "--config", str(config), "--agent", "asking", "go")
    assert done.returncode == 3, done.stderr
    assert '"question": "sure?"' in done.stderr


def test_run_from_the_project_folder_without_config(
    tmp_path: Path, keel: KeelCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    make_project(root)
    monkeypatch.chdir(root)  # the subprocess starts here: ./langgraph.json is found
    done = keel("run", "--agent", "echo", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello HI! (1)"


def test_usage_mistakes_exit_2(tmp_path: Path, keel: KeelCli) -> None:
    config = make_project(tmp_path / "proj")
    unknown = keel("run", "--config", str(config), "--agent", "nope", "q")
    assert unknown.returncode == 2
    assert "no graph 'nope'" in unknown.stderr and "known: echo, made, asking" in unknown.stderr
    model = keel("run", "--config", str(config), "--agent", "echo", "--model", "scripted:echo", "q")
    assert model.returncode == 2
    assert "--model applies to Keel agents; 'echo' is a graph" in model.stderr


def test_a_bad_file_stops_every_command_with_file_key_and_fix(
    tmp_path: Path, keel: KeelCli
) -> None:
    bad = dict(CONFIG, graphs={"echo": "./graphs.py:nothing_here"})
    config = make_project(tmp_path / "proj", bad)
    for args in (("agents",), ("run", "--agent", "echo", "q"), ("serve",), ("worker",)):
        done = keel(*args, "--config", str(config))
        assert done.returncode == 2, (args, done.stderr)
        message = " ".join(done.stderr.split())
        assert f"{config}: graphs.echo: './graphs.py' has no attribute 'nothing_here'" in message
        assert "fix: name a module-level variable" in message


AGENTS_FILE = '''
    """Two Keel agents differing in tools, instructions and model, beside the plain graphs."""
    import keel

    from tools import shout

    loud = keel.tool(idempotent=True)(shout)

    sales = keel.Agent(
        name="sales",
        instructions="You answer questions about last month's sales from the database.",
        tools=[keel.sql_query, keel.calculator],
        model="scripted:sales",
        description="Sales figures from the database.",
    )

    helper = keel.Agent(
        name="helper",
        instructions="You repeat what you are told, loudly.",
        tools=[loud],
        model="scripted:echo",
    )
'''


def keel_project(root: Path) -> Path:
    graphs = {
        "sales": "./agents.py:sales",
        "echo": "./graphs.py:builder",
        "helper": "./agents.py:helper",
    }
    config = make_project(root, dict(CONFIG, graphs=graphs))
    (root / "agents.py").write_text(textwrap.dedent(AGENTS_FILE).lstrip())
    return config


def test_two_keel_agents_and_a_plain_graph(tmp_path: Path, keel: KeelCli) -> None:
    config = keel_project(tmp_path / "proj")
    listed = keel("agents", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["graph_id"]: r for r in json.loads(listed.stdout)["graphs"]}
    assert list(rows) == ["sales", "echo", "helper"]
    assert (rows["sales"]["kind"], rows["sales"]["model"], rows["sales"]["tools"]) == (
        "keel",
        "scripted:sales",
        ["sql_query", "calculator"],
    )
    assert (rows["helper"]["model"], rows["helper"]["tools"]) == ("scripted:echo", ["shout"])
    assert rows["sales"]["default"] and rows["sales"]["description"] == (
        "Sales figures from the database."
    )
    assert "model" not in rows["echo"]

    # no --agent: the first Keel agent; it queries the database with its own model
    sales = keel("run", "--config", str(config), "--json", SALES_QUESTION)
    assert sales.returncode == 0, sales.stderr
    result = json.loads(sales.stdout)
    assert result["metadata"]["model"] == "scripted:sales"
    assert [s["action"] for s in result["metadata"]["trace"] if s["node"] == "act"] == [
        "sql_query",
        "calculator",
    ]
    for name, _ in top_products(ensure_sample_db(tmp_path / "home"), date.today()):
        assert name in result["output"]

    # the same question to the other agent: its model, no database
    helper = keel("run", "--config", str(config), "--agent", "helper", "--json", SALES_QUESTION)
    assert helper.returncode == 0, helper.stderr
    answered = json.loads(helper.stdout)
    assert answered["metadata"]["model"] == "scripted:echo"
    assert answered["output"] == f"You asked: {SALES_QUESTION}"

    plain = keel("run", "--config", str(config), "--agent", "echo", "hey")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "hello HEY! (1)"


GUARDED_FILE = '''
    """A second Keel agent whose database calls wait for a human."""
    import keel

    guarded = keel.Agent(
        name="guarded",
        tools=[keel.sql_query, keel.calculator],
        approval=["sql_query"],
        model="scripted:sales",
    )
'''


def test_thread_commands_open_the_named_agent(tmp_path: Path, keel: KeelCli) -> None:
    root = tmp_path / "proj"
    graphs = {
        "helper": "./agents.py:helper",
        "guarded": "./guarded.py:guarded",
        "echo": "./graphs.py:builder",
    }
    config = str(make_project(root, dict(CONFIG, graphs=graphs)))
    (root / "agents.py").write_text(textwrap.dedent(AGENTS_FILE).lstrip())
    (root / "guarded.py").write_text(textwrap.dedent(GUARDED_FILE).lstrip())
    thread = ("--thread", "t-guarded")

    paused = keel("run", "--config", config, "--agent", "guarded", *thread, SALES_QUESTION)
    assert paused.returncode == 3, paused.stderr
    assert "sql_query" in paused.stderr

    listed = keel("history", "--config", config, "--agent", "guarded", *thread, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["next"] == ["act"]

    done = keel("approve", "--config", config, "--agent", "guarded", *thread, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["action"] for s in result["metadata"]["trace"] if s["node"] == "act"] == [
        "sql_query",
        "calculator",
    ]
    for name, _ in top_products(ensure_sample_db(tmp_path / "home"), date.today()):
        assert name in result["output"]

    plain = keel("approve", "--config", config, "--agent", "echo", *thread)
    assert plain.returncode == 2
    assert "keel approve works on Keel agents; 'echo' is a graph" in plain.stderr


def test_the_env_file_sets_the_log_level_and_format(tmp_path: Path, keel: KeelCli) -> None:
    """Logging is configured before the project is read; the project's `env` still decides
    the log level and format (and the shell still beats the file)."""
    config = keel_project(tmp_path / "proj")
    env_file = tmp_path / "proj" / ".env"
    env_file.write_text(
        env_file.read_text()
        + "KEEL_OBSERVABILITY__LOG_LEVEL=debug\nKEEL_OBSERVABILITY__LOG_FORMAT=json\n"
    )
    args = ("run", "--config", str(config), "--agent", "helper", "hi")
    done = keel(*args)
    assert done.returncode == 0, done.stderr
    levels = [json.loads(line)["level"] for line in done.stderr.splitlines() if line[:1] == "{"]
    assert "debug" in levels and "info" in levels
    quiet = keel(*args, KEEL_OBSERVABILITY__LOG_LEVEL="warning")
    assert quiet.returncode == 0, quiet.stderr
    assert '"level": "info"' not in quiet.stderr and '"level": "debug"' not in quiet.stderr

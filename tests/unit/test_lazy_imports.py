"""Start-up (issue 19): a run imports nothing it does not use, checked in a fresh interpreter.

Redis only when a Redis URL is configured, `limits` only when a rate is, sqlglot only when
the SQL tool checks a query, LangChain's tracer (`keel.observability._tracer`) only when a
run is traced; `keel --help` and `import keel.cli` load no logging, metrics or run machinery.
`keel run` loads none of the Rich traceback and pretty-printer (nor attrs) that structlog's
import would bring for exception formats Keel does not use, nor greenlet, Rich's emoji
codes, prometheus-client (it serves no metrics), the scripted policies and planned flow it
does not run; it builds the one click command it runs, not all of them; its output is the
full app's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command_name

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("redis", "limits", "sqlglot", "keel.observability._tracer")

RUN = """
import asyncio, json, sys
from keel import load_settings
from keel.runtime import open_agent

async def main():
    settings = load_settings(
        model=sys.argv[3],
        checkpoint_url="memory://",
        home=sys.argv[1],
        **json.loads(sys.argv[2]),
    )
    async with open_agent(settings) as agent:
        result = await agent.arun("Which 3 products had the highest revenue last month?")
    assert result.success, result.error

asyncio.run(main())
print(json.dumps([m for m in WATCHED if m in sys.modules]))
""".replace("WATCHED", repr(WATCHED))

CLI = """
import contextlib, io, json, sys
from keel.cli import main
argv, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["keel", *argv]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
print(json.dumps([m for m in watched if m in sys.modules]))
"""


def _loaded(tmp_path: Path, model: str = "scripted:sales", **settings: object) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path), json.dumps(settings), model],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def _cli_loaded(tmp_path: Path, argv: list[str], watched: tuple[str, ...], **env: str) -> list[str]:
    """The `watched` modules loaded by `keel <argv>` in a fresh interpreter in `tmp_path`."""
    out = subprocess.run(
        [sys.executable, "-c", CLI, json.dumps(argv), json.dumps(watched)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,  # no langgraph.json here: the built-in agent
        env={**os.environ, "KEEL_HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **env},
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_and_runtime_loads_none_of_them() -> None:
    code = f"import keel.cli, keel.runtime, sys; print([m for m in {WATCHED} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_on_the_defaults_without_sql_imports_none(tmp_path: Path) -> None:
    assert _loaded(tmp_path, model="scripted:echo") == []


def test_the_sql_tool_imports_sqlglot_when_it_checks_a_query(tmp_path: Path) -> None:
    assert _loaded(tmp_path) == ["sqlglot"]


def test_a_configured_rate_imports_limits(tmp_path: Path) -> None:
    rates = {"rate_limits": {"model_requests_per_minute": 600}}
    assert _loaded(tmp_path, model="scripted:echo", **rates) == ["limits"]


UNUSED_BY_ECHO = (
    "rich.traceback",
    "rich.pretty",
    "attr",
    "greenlet",  # structlog's deprecated thread-local storage
    "rich._emoji_codes",  # the steps' table is Text, not markup
    "prometheus_client",  # a `keel run` serves no /metrics (keel.observability.recorder)
    "keel.testing.review_script",  # the other scripted policies
    "keel.testing.ticket_policy",
    "keel.testing.report_script",
    "keel.nodes._planned",  # the planned flow: local models on the data assistant
    "keel.nodes._planned_sql",
    "keel.nodes._planned_verify",
    "keel.tools.sql_examples",
    "keel.cli.artifacts",  # `keel run` imports the module registering `run` alone
    "keel.cli.durable",
    "keel.cli.new",
    "keel.artifacts",  # the artifact store of `keel artifacts`
    "keel.project.config_file",  # no langgraph.json: the built-in assistant
    "keel.project.importer",
)


def test_each_command_is_registered_by_the_module_keel_imports_for_it() -> None:
    """`keel <command>` imports only `keel.cli.COMMAND_MODULES[command]`: the table names
    every top-level command of the whole app, and the module defining it."""
    import keel.cli

    whole = {
        info.name or get_command_name(info.callback.__name__): info.callback.__module__
        for info in keel.cli.app.registered_commands
        if info.callback is not None
    }
    assert {name: f"keel.cli.{m}" for name, m in keel.cli.COMMAND_MODULES.items()} == whole


def test_keel_run_without_sql_imports_none(tmp_path: Path) -> None:
    run = ["run", "--model", "scripted:echo", "Hello"]
    assert _cli_loaded(tmp_path, run, (*WATCHED, *UNUSED_BY_ECHO)) == []


def test_keel_run_records_metrics_only_into_shared_files(tmp_path: Path) -> None:
    """A `keel run` keeps no metric in memory (it serves none, so prometheus-client is not
    imported); with `PROMETHEUS_MULTIPROC_DIR` set its values go there, for the exporter."""
    from keel.observability.metrics import exposition_registry, render_metrics

    run = ["run", "--model", "scripted:echo", "Hello"]
    assert _cli_loaded(tmp_path, run, ("prometheus_client",)) == []
    shared = tmp_path / "metrics"
    shared.mkdir()
    loaded = _cli_loaded(
        tmp_path, run, ("prometheus_client",), PROMETHEUS_MULTIPROC_DIR=str(shared)
    )
    assert loaded == ["prometheus_client"]
    text = render_metrics(exposition_registry(shared)).decode()
    assert 'keel_runs_total{status="success",tier="standard"} 1.0' in text
    assert 'keel_model_calls_total{model="scripted:echo",outcome="ok"} 1.0' in text


BUILT = """
import contextlib, io, json, sys
import typer.main
from keel.cli import main
built = []
make = typer.main.get_command_from_info
def spy(command_info, **kw):
    command = make(command_info, **kw)
    built.append(command.name)
    return command
typer.main.get_command_from_info = spy
sys.argv = ["keel", *json.loads(sys.argv[1])]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
import gc
print(json.dumps([built, gc.isenabled(), gc.get_freeze_count() > 0]))
"""


def test_keel_run_builds_only_the_run_command_and_ends_with_the_collector_on(
    tmp_path: Path,
) -> None:
    """…with start-up's objects frozen: neither the run's full collections nor the last one
    at exit traverse them (as `keel serve` does)."""
    out = subprocess.run(
        [sys.executable, "-c", BUILT, json.dumps(["run", "--model", "scripted:echo", "Hi"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "KEEL_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["run"], True, True]


WHOLE_APP = """
import sys
from keel.cli import app
sys.argv[0] = "keel"
app()
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],  # a missing argument
        ["run", "--modle", "x", "Hi"],  # an unknown option
        ["rnu", "Hi"],  # an unknown command
        ["resume"],  # a missing option
    ],
)
def test_keel_usage_errors_read_as_the_whole_apps(tmp_path: Path, argv: list[str]) -> None:
    """Dispatching through a one-command app changes no usage line, error or exit code."""
    env = {**os.environ, "KEEL_HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    main_code = "import sys; from keel.cli import main; sys.argv[0] = 'keel'; main()"
    got = [
        subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        for code in (main_code, WHOLE_APP)
    ]
    assert got[0].returncode == got[1].returncode == 2
    assert got[0].stderr == got[1].stderr
    assert got[0].stdout == got[1].stdout


def test_keel_help_loads_no_logging_metrics_settings_or_runtime(tmp_path: Path) -> None:
    heavy = (
        "structlog",
        "prometheus_client",
        "keel.runtime",
        "keel.observability.logs",
        "keel.config",  # the settings models, and pydantic-settings
        "pydantic_settings",
    )
    assert _cli_loaded(tmp_path, ["--help"], heavy) == []
    assert _cli_loaded(tmp_path, ["run", "--help"], heavy) == []

"""The `keel` command line. Thin: parse, call the public library, print.

Exit codes: 0 the run succeeded; 1 the run ended in a clean failure (or an unexpected
error); 2 a usage or configuration error; 3 the run waits for a human; 4 the thread has no
checkpoint (nothing to resume, approve, fork or show). Failures print one line to stderr.
"""

from __future__ import annotations

import copy
from importlib import import_module
from typing import TYPE_CHECKING, Any

import typer
from typer.main import get_command_name
from typer.models import TyperInfo

from keel.cli import _common
from keel.errors import KeelError

if TYPE_CHECKING:
    from keel.cli._common import app

__all__ = ["app", "main"]

REGISTERING = ("artifacts", "commands", "durable", "new", "project")
"""The modules of `keel.cli` that register commands on the app, in the order of `keel --help`
(artifacts list|get; run, resume, serve, …; approve, history, fork, …; new; agents)."""

COMMAND_MODULES = {
    **dict.fromkeys(
        ("run", "resume", "trace", "eval", "models", "serve", "worker", "sql-role"), "commands"
    ),
    **dict.fromkeys(("approve", "history", "fork"), "durable"),
    "new": "new",
    "agents": "project",
}
"""The module registering each top-level command (not group): `keel run` imports that one
alone (`tests/unit/test_lazy_imports.py` checks this table against the app)."""


def _registered(*modules: str) -> typer.Typer:
    """The app, with the commands of `modules` (of `REGISTERING`) registered."""
    for name in modules:
        import_module(f"keel.cli.{name}")
    return _common.app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole app: every command registered
        return _registered(*REGISTERING)
    raise AttributeError(f"module 'keel.cli' has no attribute {name!r}")


def _import_structlog() -> None:
    """Import structlog without the pieces only APIs Keel does not use need.

    structlog's import loads `rich.traceback` and `rich.pretty` (and attrs through it) for
    the console renderer's default exception formatter and the locals of dict tracebacks.
    Keel's chain renders every exception to text before the renderer (`format_exc_info`) and
    uses no dict tracebacks, so its log lines are the same either way; in a `keel` process
    structlog falls back to its plain formatter for an `exc_info` handed to a console
    renderer as is. It also loads greenlet (when installed) for the greenlet-local storage of
    its deprecated `structlog.threadlocal`, which Keel does not use (its context is
    `structlog.contextvars`); without it that module stores per thread. Nothing is hidden
    once structlog is imported, nor a module already loaded.
    """
    import importlib
    import sys

    if "structlog" in sys.modules:
        return
    hidden = [n for n in ("rich.traceback", "rich.pretty", "greenlet") if n not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # an ImportError for structlog
    try:
        importlib.import_module("structlog")
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _logs_to_stderr() -> None:
    """Log lines go to stderr (JSON unless a terminal) so stdout stays the answer or JSON."""
    import os

    _import_structlog()
    from keel.config import ObservabilitySettings, Settings, load_settings
    from keel.observability.logs import configure_logging

    langsmith_key = os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")
    secrets = (langsmith_key,) if langsmith_key else ()
    try:
        settings: Settings | ObservabilitySettings = load_settings()
    except KeelError:
        settings = ObservabilitySettings()  # the command itself reports the bad setting
    configure_logging(settings, secrets=secrets)  # stderr, as it is at each write


JOBS = ("run", "resume", "approve", "fork")
"""The commands that run an agent (through `keel.cli._common.execute`)."""


def _command_app(name: str) -> typer.Typer:
    """`app` holding the top-level command `name` alone, or the whole `app` if it has none.

    Typer builds a click command (signature, annotations, options) for every registered
    command before it dispatches; `keel run` needs one of them, and only the module that
    registers it is imported (not the artifact store of `keel artifacts`, say). The group
    stays a group (`keel run …`, usage lines and errors the same); help, groups and unknown
    names get the whole app.
    """
    module = COMMAND_MODULES.get(name)
    if module is None:
        return _registered(*REGISTERING)
    app = _registered(module)
    for info in app.registered_commands:
        callback = info.callback.__name__ if info.callback is not None else ""
        if (info.name or get_command_name(callback)) == name:
            single = copy.copy(app)
            single.registered_commands = [info]
            single.registered_groups = []
            single.registered_callback = TyperInfo(callback=_no_options)
            return single
    return _registered(*REGISTERING)


def _no_options() -> None:
    """The group callback of `_command_app`: a group with one command stays a group."""


def main() -> None:
    import gc
    import sys

    if len(sys.argv) < 2 or "--help" in sys.argv[1:]:  # help runs no command: no logs
        _registered(*REGISTERING)()
        return
    if sys.argv[1] in JOBS:
        from keel.observability.recorder import discard_metrics

        # Start-up (imports, settings, the agent) allocates long-lived objects and frees
        # almost none: no cyclic collection until the run starts (`execute` re-enables it).
        gc.disable()
        discard_metrics()  # serves no /metrics: kept only in shared files, if any
    try:
        _logs_to_stderr()
        _command_app(sys.argv[1])()
    finally:
        gc.enable()

"""The `keel` command line. Thin: parse, call the public library, print.

Exit codes: 0 the run succeeded; 1 the run ended in a clean failure (or an unexpected
error); 2 a usage or configuration error; 3 the run waits for a human; 4 the thread has no
checkpoint (nothing to resume, approve, fork or show). Failures print one line to stderr.
"""

from __future__ import annotations

from keel.cli import artifacts as _artifacts  # noqa: F401  (registers artifacts list|get)
from keel.cli import commands as _commands  # noqa: F401  (registers run, resume, serve, …)
from keel.cli import durable as _durable  # noqa: F401  (registers approve, history, fork, …)
from keel.cli import new as _new  # noqa: F401  (registers new)
from keel.cli import project as _project  # noqa: F401  (registers agents)
from keel.cli._common import app
from keel.errors import KeelError

__all__ = ["app", "main"]


def _logs_to_stderr() -> None:
    """Log lines go to stderr (JSON unless a terminal) so stdout stays the answer or JSON."""
    import os

    from keel.config import ObservabilitySettings, Settings, load_settings
    from keel.observability.logs import configure_logging

    langsmith_key = os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")
    secrets = (langsmith_key,) if langsmith_key else ()
    try:
        settings: Settings | ObservabilitySettings = load_settings()
    except KeelError:
        settings = ObservabilitySettings()  # the command itself reports the bad setting
    configure_logging(settings, secrets=secrets)  # stderr, as it is at each write


def main() -> None:
    import sys

    if len(sys.argv) > 1 and "--help" not in sys.argv[1:]:  # help runs no command: no logs
        _logs_to_stderr()
    app()

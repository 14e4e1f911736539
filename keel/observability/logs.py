"""structlog set-up: one JSON object per line in production, readable lines in a terminal.

Every event goes through the `Redactor` last, after exceptions are rendered, so a key in
a traceback is masked too. Context bound with `bind_run` (run_id, thread_id, tenant) rides
along on every event of the run, nodes included: LangGraph's tasks inherit contextvars.

```python
configure_logging(settings, stream=sys.stderr)     # once, at the entry point
log = get_logger()
log.info("run.start", model="openai:gpt-4o-mini")
```
An application that never configures structlog still gets safe logs: `ensure_logging`
(called for every agent) installs this set-up on stderr, redacted, instead of structlog's
default of unredacted lines on stdout. One that configured structlog itself is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import IO, Any, TextIO, cast

import structlog

from keel.config import ObservabilitySettings, Settings
from keel.observability.redact import Redactor, remember, secret_values

__all__ = [
    "bind_run",
    "configure_logging",
    "ensure_logging",
    "get_logger",
    "keel_logger",
    "listen",
    "redactor_for",
    "secret_values",
]

LOGGER_NAME = "keel"

Listener = Callable[[Mapping[str, Any]], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("keel_log_listener", default=None)


def redactor_for(settings: Settings) -> Redactor:
    """The default patterns, the configured ones, and the configured secrets' values."""
    return Redactor.build(settings.observability.redact_patterns, secret_values(settings))


class _CurrentStderr:
    """`sys.stderr` as it is at each write, not as it was when logging was configured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return _is_tty(sys.stderr)


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _wants_json(fmt: str, stream: IO[str]) -> bool:
    if fmt == "json":
        return True
    if fmt == "pretty":
        return False
    return not _is_tty(stream)


def configure_logging(
    settings: Settings | ObservabilitySettings,
    *,
    stream: IO[str] | None = None,
    secrets: tuple[str, ...] = (),
    route_stdlib: bool = True,
) -> Redactor:
    """Configure structlog process-wide; returns the redactor it installed.

    Given full `Settings`, the configured API keys are masked as well as `secrets`.
    `stream` defaults to stderr (whatever `sys.stderr` is at each write, so a terminal
    spinner's redirection puts log lines above it) so stdout stays free for answers and
    `--json` objects.
    `route_stdlib` also formats and masks the standard library's log records (warnings of
    httpx, langsmith, …) on the same stream.
    """
    out = stream if stream is not None else cast(IO[str], _CurrentStderr())
    if isinstance(settings, Settings):
        obs = settings.observability
        remember(settings)
        secrets = (*secret_values(settings), *secrets)
    else:
        obs = settings
    redactor = Redactor.build(obs.redact_patterns, secrets)
    as_json = _wants_json(obs.log_format, out)
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=_is_tty(out), timestamp_key="ts")
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    processors = [*shared, redactor, _notify, _event_first, renderer]
    if route_stdlib:
        _route_stdlib(out, shared, redactor, renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[obs.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )
    return redactor


def ensure_logging(settings: Settings) -> None:
    """Remember `settings`' secrets; if nobody configured structlog, configure it (stderr,
    redacted) so a library user never gets structlog's unredacted default on stdout."""
    remember(settings)
    if not structlog.is_configured():
        configure_logging(settings, route_stdlib=False)


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Show every (redacted) event logged inside to `listener` too (a CLI spinner)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def _notify(logger: Any, method: str, event: Any) -> Any:
    listener = _LISTENER.get()
    if listener is not None:
        with contextlib.suppress(Exception):  # a display hook must never break logging
            listener(event)
    return event


def _event_first(logger: Any, method: str, event: Any) -> Any:
    """`ts`, `level`, `event` lead each line, so a human can scan the JSON too."""
    head = {k: event.pop(k) for k in ("ts", "level", "event") if k in event}
    return {**head, **event}


def _route_stdlib(out: IO[str], shared: list[Any], redactor: Redactor, renderer: Any) -> None:
    """Library warnings (stdlib `logging`: httpx, langsmith, …) get the same format and mask."""
    handler = logging.StreamHandler(out)
    handler.set_name("keel")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redactor,
                _event_first,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "keel"] + [handler]
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def get_logger(**initial: Any) -> Any:
    """Keel's logger (a structlog bound logger), with `initial` values bound."""
    return structlog.get_logger(LOGGER_NAME, **initial)


_assembled: tuple[tuple[Any, ...], Any] | None = None


def keel_logger() -> Any:
    """Keel's logger assembled for structlog's current configuration, reused until that
    changes: for the events of every run. `get_logger()`'s lazy proxy assembles a new
    logger for every event, a filtered one too (~2 µs and a few objects each); a logger
    assembled per run would keep those objects for the run's length. The configuration's
    parts are held (and compared by identity), so a new one is never taken for the old."""
    global _assembled
    config = structlog.get_config()
    key = (
        config["processors"],
        config["wrapper_class"],
        config["logger_factory"],
        config["context_class"],
    )
    found = _assembled
    if found is None or any(a is not b for a, b in zip(found[0], key, strict=True)):
        found = _assembled = (key, structlog.get_logger(LOGGER_NAME).bind())
    return found[1]


class _Bound:
    """`bind_run`'s context manager: binds on entry, puts the earlier values back on exit.

    A class rather than a generator (structlog's `bound_contextvars`): it stays alive for
    a whole run, and a generator holds its frame, its context manager and their arguments.
    """

    __slots__ = ("_tokens", "_values")

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self._tokens: Mapping[str, Any] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)

    def __exit__(self, *exc_info: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


def bind_run(**values: Any) -> AbstractContextManager[None]:
    """Bind run context (run_id, thread_id, tenant, …) to every event logged inside."""
    return _Bound({k: v for k, v in values.items() if v is not None})

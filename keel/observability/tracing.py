"""LangSmith tracing for an agent: on or off, sampling, payload size, and a bounded shutdown.

```bash
LANGSMITH_TRACING=true LANGSMITH_API_KEY=lsv2_… keel run "…"      # every run is one trace
KEEL_OBSERVABILITY__TRACE_SAMPLE_RATE=0.1                          # 10 % of successful runs
```
Endpoint, key and project are LangSmith's own variables (`LANGSMITH_ENDPOINT`,
`LANGSMITH_API_KEY`, `LANGSMITH_PROJECT`), read by the LangSmith client itself.
Sending happens on the client's background thread; a slow or dead endpoint costs the run
nothing, and closing the agent waits at most `trace_flush_timeout_s` for unsent traces.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from keel.config import Settings
from keel.observability.logs import ensure_logging
from keel.observability.redact import remember_secrets

__all__ = ["TracePolicy", "Tracing", "pin_sender"]


@dataclass
class TracePolicy:
    """What is sent, and how much of it."""

    sample_rate: float = 1.0
    """Share of successful, undisturbed runs sent; every other run is always sent."""
    payloads: Literal["full", "light"] = "light"
    """`light` drops whole-state inputs of node runs, and edge runs whole."""
    rng: random.Random = field(default_factory=random.Random)

    def keep(self, reasons: set[str]) -> bool:
        if reasons:
            return True
        return self.sample_rate >= 1.0 or self.rng.random() < self.sample_rate


def _daemon_client() -> tuple[Any, threading.Event]:
    """A LangSmith client whose sender threads are daemons, and an event set once it knows
    what the server offers.

    The stock client sends from non-daemon threads, so a process whose endpoint hangs
    cannot exit until every retry has timed out (minutes). Here unsent traces are given
    `trace_flush_timeout_s` at close and then dropped with the process. (The client's own
    switch for this is the `LANGSMITH_USE_DAEMON` variable; library code reads no env.)

    The sender asks the server (`GET /info`) before it turns compression on, and traces
    queued before that go uncompressed; `Tracing.start` waits (bounded) for the answer.
    """
    import queue
    import weakref

    from langsmith import Client

    client = Client(timeout_ms=(2_000, 10_000), auto_batch_tracing=False)
    client._use_daemon_threads = True
    client.tracing_queue = queue.PriorityQueue(maxsize=_QUEUE_MAX)
    informed = threading.Event()
    threading.Thread(target=_send, args=(weakref.ref(client), informed), daemon=True).start()
    return client, informed


def _send(client_ref: Any, informed: threading.Event) -> None:
    """The sender thread: fetch the server's info (cached by the client), then send.

    No reference to the client is held while sending: LangSmith's loop stops when it
    believes it holds the last ones (`pin_sender`)."""
    from langsmith._internal._background_thread import tracing_control_thread_func

    client = client_ref()
    if client is None:
        return
    with contextlib.suppress(Exception):  # an unreachable server: the client's defaults
        client.info  # noqa: B018 (the property fetches and caches)
    del client
    informed.set()
    tracing_control_thread_func(client_ref)


def _await_compression_choice(client: Any, informed: threading.Event, wait_s: float) -> None:
    """Block until the sender knows whether the server takes compressed traces and, if it
    does, has switched compression on; at most `wait_s`."""
    from langsmith import utils as ls_utils

    deadline = time.monotonic() + wait_s
    if not informed.wait(wait_s):
        return
    flags = getattr(client.info, "instance_flags", None) or {}
    if ls_utils.is_env_var_truish("DISABLE_RUN_COMPRESSION") or getattr(
        client, "_tracing_mode", None
    ) in ("otel", "hybrid"):
        return  # LangSmith's own reasons not to compress: nothing to wait for
    while (
        flags.get("zstd_compression_enabled")
        and client.compressed_traces is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.002)


_START_WAIT_S = 0.5
"""At most this long opening an agent for the server's answer; a slower server gets its
first traces uncompressed (the same traces arrive)."""

_QUEUE_MAX = 10_000
"""Run operations waiting to be sent; beyond this the client drops them."""

_PINS = 64
_NO_SCOPE = nullcontext()
"""`Tracing.scope` when nothing needs silencing (a `nullcontext` can be entered again)."""


def pin_sender(client: Any) -> tuple[Any, ...]:
    """References that keep the client's sender thread running until `close()`.

    The LangSmith sender thread stops when `sys.getrefcount(client)` falls to what it
    believes are its own references, and that estimate counts its helper threads. After a
    burst (helpers spawned, runs done) it can stop while the client is still in use, and
    every later trace waits in the queue forever. Holding these references until the
    client is closed (which stops the thread explicitly) rules that out.
    """
    return (client,) * _PINS


@dataclass
class Tracing:
    """Per agent: whether runs are traced, and the LangSmith client they go through."""

    enabled: bool = False
    client: Any = None
    """A `langsmith.Client` (built only when tracing is on)."""
    project: str | None = None
    policy: TracePolicy = field(default_factory=TracePolicy)
    flush_timeout_s: float = 2.0
    silence: bool = False
    """Off on purpose: also keep LangSmith's env-driven default tracer away from runs."""
    _closed: bool = False
    _pins: tuple[Any, ...] = ()
    _informed: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.client is not None and not self._pins:
            self._pins = pin_sender(self.client)

    @classmethod
    def from_settings(cls, settings: Settings, *, client: Any = None) -> Tracing:
        """On when `tracing` is `on`, or `auto` and LangSmith's own switch says so.

        Every agent is built through here, so this is also where its settings' secrets are
        remembered for redaction and where a library user's logs are made safe
        (`ensure_logging`)."""
        ensure_logging(settings)
        obs = settings.observability
        policy = TracePolicy(sample_rate=obs.trace_sample_rate, payloads=obs.trace_payloads)
        if obs.tracing == "off":
            return cls(enabled=False, policy=policy, silence=True)
        from langsmith import utils as ls_utils

        if obs.tracing == "auto" and not ls_utils.tracing_is_enabled():
            return cls(enabled=False, policy=policy)
        informed = None
        if client is None:
            client, informed = _daemon_client()
        key = getattr(client, "api_key", None)
        if isinstance(key, str):
            remember_secrets([key])  # LangSmith's own key, read by its client from the env
        return cls(
            enabled=True,
            client=client,
            project=obs.trace_project,
            policy=policy,
            flush_timeout_s=obs.trace_flush_timeout_s,
            _informed=informed,
        )

    async def start(self) -> None:
        """Before the first run: let Keel's own client learn what the server offers, so
        the first traces are compressed where the server takes them. Waits at most 0.5 s."""
        informed, self._informed = self._informed, None
        if informed is not None:
            await asyncio.to_thread(_await_compression_choice, self.client, informed, _START_WAIT_S)

    @classmethod
    def seeded(cls, settings: Settings, seed: int, *, client: Any = None) -> Tracing:
        """Like `from_settings`, with a reproducible sampling sequence (tests, benchmarks)."""
        tracing = cls.from_settings(settings, client=client)
        tracing.policy.rng = random.Random(seed)
        return tracing

    def callbacks(self, metadata: Mapping[str, Any] | None = None) -> list[Any]:
        """The callback handlers for one run: a fresh `KeelTracer`, or none."""
        if not self.enabled or self._closed:
            return []
        from keel.observability._tracer import KeelTracer  # LangChain's tracer: traced runs only

        return [
            KeelTracer(
                project_name=self.project,
                client=self.client,
                policy=self.policy,
                metadata=dict(metadata) if metadata else None,
            )
        ]

    def scope(self) -> AbstractContextManager[Any]:
        """Around a run: when off on purpose, silence LangSmith's env-driven default tracer."""
        if not self.silence:
            return _NO_SCOPE
        from langsmith import tracing_context

        return tracing_context(enabled=False)

    def close(self) -> None:
        """Send what is queued, waiting at most `flush_timeout_s`; then drop the rest."""
        if self._closed or self.client is None:
            self._closed = True
            return
        self._closed = True
        with contextlib.suppress(Exception):  # best effort at shutdown
            self.client.close(timeout=self.flush_timeout_s)
        self._pins = ()

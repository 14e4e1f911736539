"""Opening an agent waits for LangSmith's compression decision only when there is one."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from langsmith.utils import get_env_var

from keel.observability.tracing import _await_compression_choice


def client(zstd: bool, mode: str = "langsmith") -> SimpleNamespace:
    flags = {"zstd_compression_enabled": zstd}
    return SimpleNamespace(
        info=SimpleNamespace(instance_flags=flags), compressed_traces=None, _tracing_mode=mode
    )


def waited(fake: SimpleNamespace, informed: bool = True, wait_s: float = 0.3) -> float:
    event = threading.Event()
    if informed:
        event.set()
    started = time.monotonic()
    _await_compression_choice(fake, event, wait_s)
    return time.monotonic() - started


def test_it_waits_for_the_sender_to_turn_compression_on() -> None:
    fake = client(zstd=True)
    threading.Timer(0.05, lambda: setattr(fake, "compressed_traces", object())).start()
    assert 0.04 < waited(fake, wait_s=2.0) < 1.0
    assert waited(client(zstd=True)) >= 0.3  # never turned on: the bound holds
    assert waited(client(zstd=True), informed=False) >= 0.3  # no answer from the server


def test_nothing_to_wait_for_when_compression_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert waited(client(zstd=False)) < 0.1  # the server does not take it
    assert waited(client(zstd=True, mode="otel")) < 0.1
    monkeypatch.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
    get_env_var.cache_clear()  # LangSmith caches what it read (its sender reads it the same way)
    try:
        assert waited(client(zstd=True)) < 0.1
    finally:
        monkeypatch.undo()
        get_env_var.cache_clear()

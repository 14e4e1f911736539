"""A pytest plugin that fails any test opening a connection to a non-loopback address.

Loaded for every test run (`-p keel.testing.network_guard` in pyproject). It wraps
`socket.socket.connect` / `connect_ex`, which both blocking and asyncio connections go
through; Unix sockets and 127.0.0.0/8, ::1 and `localhost` pass. A blocked attempt raises
`NetworkBlockedError`, so a test can never reach a real model provider.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from keel.errors import NetworkBlockedError

__all__ = ["block_non_loopback", "is_loopback_address"]

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def is_loopback_address(address: Any) -> bool:
    """True for addresses this guard lets through."""
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family == socket.AF_UNIX or is_loopback_address(address):
        return
    raise NetworkBlockedError(f"test tried to connect to non-loopback address {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _original_connect_ex(self, address)


def block_non_loopback() -> None:
    """Install the guard process-wide (idempotent)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


def pytest_configure(config: pytest.Config) -> None:
    block_non_loopback()


@pytest.fixture(autouse=True)
def _no_real_model_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hosted-provider credentials never reach a test."""
    for name in ("OPENAI_API_KEY", "KEEL_OPENAI_API_KEY", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    yield

"""An SQLAlchemy async engine whose connections are never lost to a cancelled checkout.

SQLAlchemy finishes a connection's `close()` even when the task closing it is cancelled, but
not its checkout (`AsyncConnection.start`): a task cancelled while the pool connects or pings
a connection (a client that hung up on a stream, a cancelled run, a timeout) leaves that
connection checked out with nothing to return it. It stays open on the server until the
garbage collector happens to find it: with 300 cancelled requests on a pool of two and the
collector off, the Postgres server ran out of connections (`sorry, too many clients
already`) and every other client of it with it; with the collector on, each stayed open
until the collector found it (`SAWarning: The garbage collector is trying to clean up
non-checked-in connection`).

Here the checkout always runs to its end in a task of its own; when its caller was cancelled
meanwhile, the connection it got is closed (returned to the pool) as soon as it is out, and
the caller's cancellation goes on as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["open_engine"]

_CLOSING: set[asyncio.Task[None]] = set()
"""Closes of connections whose callers left during checkout, kept alive until they end."""


def _hand_back(checkout: asyncio.Future[AsyncConnection]) -> None:
    if checkout.cancelled() or checkout.exception() is not None:
        return  # nothing was checked out (the exception is the pool's, already handled)
    closing = asyncio.ensure_future(checkout.result().close())
    _CLOSING.add(closing)
    closing.add_done_callback(_CLOSING.discard)


class _Connection(AsyncConnection):
    """An `AsyncConnection` whose checkout a cancellation cannot abandon half-way."""

    __slots__ = ()

    async def start(self, is_ctxmanager: bool = False) -> AsyncConnection:
        checkout = asyncio.ensure_future(super().start(is_ctxmanager))
        try:
            return await asyncio.shield(checkout)
        except asyncio.CancelledError:
            checkout.add_done_callback(_hand_back)
            raise


class _Engine(AsyncEngine):
    """An `AsyncEngine` handing out `_Connection`s, also once given execution options."""

    __slots__ = ()
    _connection_cls = _Connection

    def execution_options(self, **opt: Any) -> AsyncEngine:
        return _Engine(self.sync_engine.execution_options(**opt))


def open_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """`create_async_engine(url, **kwargs)` whose connections survive a cancelled checkout."""
    return _Engine(create_async_engine(url, **kwargs).sync_engine)

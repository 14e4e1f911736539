"""Fixtures shared by the HTTP API tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings
from tests.conftest import fresh_database
from tests.integration.service_server import running_server


@contextmanager
def _scripted_server(
    settings_factory: Callable[..., Settings], tmp_path: Path, model: str
) -> Iterator[str]:
    settings = settings_factory(model=model, checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}")
    with running_server(settings) as url:
        yield url


@pytest.fixture
def sales_server(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[str]:
    """A running `keel serve` (in-process runs on SQLite) with the scripted sales model."""
    with _scripted_server(settings_factory, tmp_path, "scripted:sales") as url:
        yield url


@pytest.fixture
def slow_server(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[str]:
    """The same, each model call taking 200 ms (long enough to interrupt a stream)."""
    with _scripted_server(settings_factory, tmp_path, "scripted:sales@200ms") as url:
        yield url


@pytest.fixture
def secured(settings_factory: Callable[..., Settings], tmp_path: Path) -> Settings:
    """Settings of a server that requires API keys (in-process runs on SQLite)."""
    return settings_factory(
        model="scripted:sales",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service={"require_api_key": True},
    )


@pytest.fixture
def queue_db() -> Iterator[str]:
    """A database of this test's own: the queue's jobs and workers are not shared."""
    with fresh_database("keel_queue") as (url, _):
        yield url


@pytest.fixture
def distributed(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    queue_db: str,
    redis_url: str,
    redis_prefix: str,
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_MODEL="scripted:sales@600ms",  # long enough that a kill lands mid-run
        KEEL_CHECKPOINT_URL=queue_db,
        KEEL_REDIS_URL=redis_url,
        KEEL_REDIS_PREFIX=redis_prefix,
        KEEL_SERVICE__QUEUE="procrastinate",
        KEEL_SERVICE__WORKER_HEARTBEAT_S="0.5",
        KEEL_SERVICE__WORKER_STALLED_AFTER_S="2",
        KEEL_RETRY__INITIAL_S="0",
    )
    settings = settings_factory(
        model="scripted:sales",
        checkpoint_url=queue_db,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        service={"queue": "procrastinate"},
    )
    return {"env": env, "settings": settings, "logs": tmp_path}

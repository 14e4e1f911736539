"""Fixtures shared by the HTTP API tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keel.config import Settings
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

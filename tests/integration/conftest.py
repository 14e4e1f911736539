"""Fixtures shared by the HTTP API tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keel.config import Settings
from tests.integration.service_server import running_server


@pytest.fixture
def sales_server(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[str]:
    """A running `keel serve` (in-process runs on SQLite) with the scripted sales model."""
    settings = settings_factory(
        model="scripted:sales", checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}"
    )
    with running_server(settings) as url:
        yield url

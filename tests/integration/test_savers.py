"""`open_saver` builds a working saver for each URL scheme, and refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from keel.checkpoints import open_saver, sqlite_path
from keel.errors import ConfigError


async def test_saver_round_trip(checkpoint_url: str) -> None:
    config = {"configurable": {"thread_id": "t-saver", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    async with open_saver(checkpoint_url) as saver:
        stored = await saver.aput(config, checkpoint, {"source": "input", "step": -1}, {})
        found = await saver.aget_tuple(stored)
    assert found is not None and found.checkpoint["id"] == checkpoint["id"]


async def test_sqlite_creates_parent_folders_and_persists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'cp.sqlite'}"
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    async with open_saver(url) as saver:
        await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
    async with open_saver(url) as saver:
        assert await saver.aget_tuple(config) is not None
    assert sqlite_path(url).exists()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "sqlite:///", "file:///tmp/x"])
async def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="KEEL_CHECKPOINT_URL"):
        async with open_saver(url):
            pass

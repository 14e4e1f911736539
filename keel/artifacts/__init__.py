"""Artifacts: files agents produce for people (reports, charts), stored through one small
interface (`ArtifactStore`) and fetched by id through the CLI and the HTTP API.

`open_artifact_store(settings)` gives the configured store: a local folder by default
(`<home>/artifacts`, or `KEEL_ARTIFACTS__URL=file:///path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from keel.artifacts.local import LocalArtifactStore
from keel.artifacts.store import (
    MAX_LIST,
    Artifact,
    ArtifactStore,
    ArtifactStoreError,
    artifact_id,
    check_name,
    is_artifact_id,
)
from keel.errors import ConfigError

if TYPE_CHECKING:  # `keel --help` registers the artifacts commands without the settings
    from keel.config import Settings

__all__ = [
    "MAX_LIST",
    "Artifact",
    "ArtifactStore",
    "ArtifactStoreError",
    "LocalArtifactStore",
    "artifact_id",
    "check_name",
    "is_artifact_id",
    "open_artifact_store",
]


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The store `KEEL_ARTIFACTS__URL` names (`file:///path`), else `<home>/artifacts`."""
    url = settings.artifacts.url
    if url is None:
        root = settings.home / "artifacts"
    else:
        parsed = urlparse(url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"KEEL_ARTIFACTS__URL: expected file:///path, got {url!r}")
        root = Path(unquote(parsed.path))
    return LocalArtifactStore(root, max_bytes=settings.artifacts.max_bytes)

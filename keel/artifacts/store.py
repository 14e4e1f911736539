"""The artifact interface: what an agent produces for people (reports, charts), kept apart
from the run's state.

An artifact is bytes with a content type, a name and metadata, owned by a tenant and filed
under the thread and run that wrote it. Stores are small: `put`, `get`, `head`, `list`,
`delete`; a local folder (`keel.artifacts.local`) is the default, and an object store (S3,
GCS, Azure Blob) fits the same five calls (see docs/workloads.md).

`put` is create-once. The id is derived from the tenant, the writer's idempotency key
(`thread_id:tool_call_id`) and the name, so a replayed or resumed tool call gets the same id
and finds the artifact already there: it is never written twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from keel.errors import ErrorCode, RunError, UsageError

__all__ = [
    "MAX_LIST",
    "Artifact",
    "ArtifactStore",
    "ArtifactStoreError",
    "artifact_id",
    "check_name",
    "is_artifact_id",
]

MAX_LIST = 1000
"""Most artifacts one `list` returns."""
_ID = re.compile(r"art_[0-9a-f]{32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ArtifactStoreError(RunError):
    """The store could not be read or written (disk full, permissions, the service down)."""

    code = ErrorCode.STORAGE_UNAVAILABLE


@dataclass(frozen=True)
class Artifact:
    """An artifact's description (everything but its bytes)."""

    id: str
    tenant: str
    thread_id: str
    run_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: str
    """ISO 8601, UTC."""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def artifact_id(tenant: str, key: str, name: str) -> str:
    """The id of the artifact `name` written under idempotency key `key` for `tenant`."""
    digest = hashlib.sha256("\x00".join((tenant, key, name)).encode()).hexdigest()
    return f"art_{digest[:32]}"


def is_artifact_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def check_name(name: str) -> str:
    """Artifact names are file names: 1-128 letters, digits, `.`, `_`, `-`."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"artifact name {name!r} must be 1-128 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifacts live. Every call is scoped to one tenant: another tenant's artifact
    is not found, listed or deleted."""

    async def put(
        self,
        *,
        tenant: str,
        thread_id: str,
        run_id: str | None,
        key: str,
        name: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Artifact:
        """Store `data` as `name` once per (`tenant`, `key`, `name`): when it exists already
        the stored artifact is returned and nothing is written."""
        ...

    async def head(self, tenant: str, artifact_id: str) -> Artifact | None:
        """The artifact's description, or None."""
        ...

    async def get(self, tenant: str, artifact_id: str) -> tuple[Artifact, bytes] | None:
        """The artifact and its bytes, or None."""
        ...

    async def list(
        self, tenant: str, *, thread_id: str | None = None, limit: int = 100
    ) -> list[Artifact]:
        """The tenant's artifacts (of one thread when given), newest first, at most
        `limit` (capped at `MAX_LIST`)."""
        ...

    async def delete(self, tenant: str, artifact_id: str) -> bool:
        """Remove the artifact; False when there was none."""
        ...

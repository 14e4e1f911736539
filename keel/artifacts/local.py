"""The default artifact store: a local folder (`KEEL_ARTIFACTS__URL=file:///path`, or
`<home>/artifacts`).

Layout, per tenant (names that are not plain file names are replaced by a hash):

```
<root>/<tenant>/objects/<id>.<sha256[:16]>.bin   the bytes
<root>/<tenant>/objects/<id>.json                the description; its presence commits it
<root>/<tenant>/threads/<thread>/<id>            an empty marker: the thread's listing
```
Each file is written to a temporary name, flushed and renamed; the description is linked
into place (`os.link` fails when it exists), so of two writers of one id exactly one
commits and the other gets the committed artifact back. A crash leaves at most an
uncommitted data file, which the next `put` of that id replaces.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from keel.artifacts.store import (
    MAX_LIST,
    Artifact,
    ArtifactStoreError,
    artifact_id,
    check_name,
    is_artifact_id,
)
from keel.errors import UsageError

__all__ = ["LocalArtifactStore"]

T = TypeVar("T")
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def _segment(value: str) -> str:
    """A tenant or thread id as one safe path segment (never `.`/`..`, never a `/`)."""
    if _PLAIN.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class LocalArtifactStore:
    """Artifacts as files under `root`."""

    def __init__(self, root: Path, *, max_bytes: int = 20_000_000) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def _objects(self, tenant: str) -> Path:
        return self.root / _segment(tenant) / "objects"

    def _thread_dir(self, tenant: str, thread_id: str) -> Path:
        return self.root / _segment(tenant) / "threads" / _segment(thread_id)

    def _meta_path(self, tenant: str, aid: str) -> Path:
        return self._objects(tenant) / f"{aid}.json"

    def _data_path(self, tenant: str, aid: str, sha256: str) -> Path:
        return self._objects(tenant) / f"{aid}.{sha256[:16]}.bin"

    # ------------------------------------------------------------------ the interface
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
        check_name(name)
        if len(data) > self.max_bytes:
            raise UsageError(
                f"artifact {name!r} is {len(data)} bytes, over the store's limit of "
                f"{self.max_bytes} (KEEL_ARTIFACTS__MAX_BYTES)"
            )
        if not content_type or "/" not in content_type:
            raise UsageError(f"artifact {name!r}: content type {content_type!r} is not a MIME type")
        artifact = Artifact(
            id=artifact_id(tenant, key, name),
            tenant=tenant,
            thread_id=thread_id,
            run_id=run_id,
            name=name,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        )
        return await self._io(self._put, artifact, data)

    async def head(self, tenant: str, artifact_id: str) -> Artifact | None:
        if not is_artifact_id(artifact_id):
            return None
        return await self._io(self._read_meta, self._meta_path(tenant, artifact_id))

    async def get(self, tenant: str, artifact_id: str) -> tuple[Artifact, bytes] | None:
        if not is_artifact_id(artifact_id):
            return None
        return await self._io(self._get, tenant, artifact_id)

    async def list(
        self, tenant: str, *, thread_id: str | None = None, limit: int = 100
    ) -> list[Artifact]:
        return await self._io(self._list, tenant, thread_id, max(0, min(limit, MAX_LIST)))

    async def delete(self, tenant: str, artifact_id: str) -> bool:
        if not is_artifact_id(artifact_id):
            return False
        return await self._io(self._delete, tenant, artifact_id)

    # ------------------------------------------------------------------ blocking parts
    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise ArtifactStoreError(
                f"artifact store {self.root}: {type(exc).__name__}: {exc}"
            ) from exc

    def _put(self, artifact: Artifact, data: bytes) -> Artifact:
        meta_path = self._meta_path(artifact.tenant, artifact.id)
        found = self._read_meta(meta_path)
        if found is not None:
            return found  # written before (a replay or a resumed run): never twice
        objects = meta_path.parent
        objects.mkdir(parents=True, exist_ok=True)
        data_path = self._data_path(artifact.tenant, artifact.id, artifact.sha256)
        _write_atomic(data_path, data)
        blob = json.dumps(artifact.to_json(), sort_keys=True).encode()
        tmp = _write_temp(objects, blob)
        try:
            os.link(tmp, meta_path)  # create-once: fails when another writer committed
        except FileExistsError:
            winner = self._read_meta(meta_path)
            if winner is not None and winner.sha256 != artifact.sha256:
                data_path.unlink(missing_ok=True)
            if winner is not None:
                artifact = winner
        finally:
            tmp.unlink(missing_ok=True)
        marker_dir = self._thread_dir(artifact.tenant, artifact.thread_id)
        marker_dir.mkdir(parents=True, exist_ok=True)
        (marker_dir / artifact.id).touch()
        _fsync_dir(objects)
        return artifact

    def _read_meta(self, path: Path) -> Artifact | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Artifact.from_json(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ArtifactStoreError(f"artifact description {path} is unreadable: {exc}") from exc

    def _get(self, tenant: str, aid: str) -> tuple[Artifact, bytes] | None:
        artifact = self._read_meta(self._meta_path(tenant, aid))
        if artifact is None:
            return None
        try:
            data = self._data_path(tenant, aid, artifact.sha256).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactStoreError(f"artifact {aid}: its data file is missing") from exc
        return artifact, data

    def _list(self, tenant: str, thread_id: str | None, limit: int) -> builtins.list[Artifact]:
        if thread_id is not None:
            folder = self._thread_dir(tenant, thread_id)
            ids = [p.name for p in folder.iterdir()] if folder.is_dir() else []
            metas = [self._meta_path(tenant, i) for i in ids if is_artifact_id(i)]
        else:
            objects = self._objects(tenant)
            metas = list(objects.glob("art_*.json")) if objects.is_dir() else []
        found = [a for a in (self._read_meta(m) for m in metas) if a is not None]
        if thread_id is not None:
            found = [a for a in found if a.thread_id == thread_id]  # hashed names may clash
        found.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        return found[:limit]

    def _delete(self, tenant: str, aid: str) -> bool:
        meta_path = self._meta_path(tenant, aid)
        artifact = self._read_meta(meta_path)
        if artifact is None:
            return False
        meta_path.unlink(missing_ok=True)  # uncommitted from here on
        self._data_path(tenant, aid, artifact.sha256).unlink(missing_ok=True)
        (self._thread_dir(tenant, artifact.thread_id) / aid).unlink(missing_ok=True)
        return True


def _write_temp(folder: Path, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _write_temp(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

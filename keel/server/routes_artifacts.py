"""Artifacts: list a thread's stored files and fetch one by id, with its content type.

Every artifact belongs to the tenant of the run that wrote it: another tenant's artifact (or
thread) is a 404, never a 403, so ids reveal nothing. The store is the configured one
(`keel.artifacts.open_artifact_store`), shared with `keel artifacts` and the report tools.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from keel.artifacts import MAX_LIST, ArtifactStore, ArtifactStoreError, open_artifact_store
from keel.server.deps import Caller, Services, Svc, load_thread
from keel.server.errors import COMMON_ERRORS, NotFound, Unavailable
from keel.server.schemas import ID_PATTERN

__all__ = ["router"]

router = APIRouter(tags=["artifacts"], responses=COMMON_ERRORS)
ArtifactIdPath = Annotated[str, Path(pattern=r"^art_[0-9a-f]{32}$")]
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]


class ArtifactInfo(BaseModel):
    """An artifact's description; its bytes are at `GET /artifacts/{id}`."""

    id: str
    thread_id: str
    run_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: str
    metadata: dict[str, str]


def _store(svc: Services) -> ArtifactStore:
    return open_artifact_store(svc.graphs.settings)


@router.get("/threads/{thread_id}/artifacts", response_model=list[ArtifactInfo])
async def list_thread_artifacts(
    thread_id: ThreadId,
    svc: Svc,
    principal: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[ArtifactInfo]:
    """The thread's artifacts, newest first."""
    thread = await load_thread(svc, thread_id, principal)
    try:
        # tools file them under the thread's key (what their run knows it by)
        found = await _store(svc).list(principal.tenant_id, thread_id=thread.key, limit=limit)
    except ArtifactStoreError as exc:
        raise Unavailable(exc.message) from exc
    shown = [{k: v for k, v in a.to_json().items() if k != "tenant"} for a in found]
    return [ArtifactInfo(**{**info, "thread_id": thread_id}) for info in shown]


@router.get(
    "/artifacts/{artifact_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes."}},
)
async def get_artifact(artifact_id: ArtifactIdPath, svc: Svc, principal: Caller) -> Response:
    """The artifact's bytes, served with its content type."""
    try:
        found = await _store(svc).get(principal.tenant_id, artifact_id)
    except ArtifactStoreError as exc:
        raise Unavailable(exc.message) from exc
    if found is None:
        raise NotFound(f"artifact {artifact_id} not found")
    artifact, data = found
    return Response(
        content=data,
        media_type=artifact.content_type,
        headers={
            "Content-Disposition": f'inline; filename="{artifact.name}"',
            "ETag": f'"{artifact.sha256}"',
        },
    )

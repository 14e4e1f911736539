"""What every route needs: the process's services and the calling principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from keel.server.assistants import Assistants
from keel.server.auth import Authenticator, Principal
from keel.server.errors import NotFound
from keel.server.graphs import ServedGraphs
from keel.server.runs import RunManager
from keel.server.store import Store, ThreadRecord

__all__ = ["Caller", "Services", "Svc", "iso", "load_thread", "services"]


@dataclass
class Services:
    graphs: ServedGraphs
    store: Store
    runs: RunManager
    auth: Authenticator
    assistants: Assistants


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Svc = Annotated[Services, Depends(services)]


async def caller(
    svc: Svc, x_api_key: Annotated[str | None, Header(alias="x-api-key")] = None
) -> Principal:
    return await svc.auth.principal(x_api_key)


Caller = Annotated[Principal, Depends(caller)]


async def load_thread(svc: Services, thread_id: str, principal: Principal) -> ThreadRecord:
    """The caller's thread, or 404 (another tenant's thread does not exist for them)."""
    thread = await svc.store.get_thread(thread_id, principal.tenant_id)
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return thread


def iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value

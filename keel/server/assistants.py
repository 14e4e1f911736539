"""Assistants: a graph of the project with its own config, context, name and metadata.

Each graph has a default assistant, as the Agent Server defines it (id `uuid5` of the graph
id, `metadata.created_by == "system"`, version 1, never changed), visible to every tenant.
A tenant creates its own; an update makes a new version (every version is kept, and
`set_latest` makes an earlier one current again). A run names an assistant by id or by
graph id (that graph's default assistant).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from keel.server.errors import Conflict, NotFound
from keel.server.graphs import ServedGraphs, default_assistant_id
from keel.server.store import metadata_matches, now
from keel.server.tables import assistant_versions, assistants

__all__ = ["Assistant", "AssistantStore", "Assistants"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SYSTEM = "system"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Assistant:
    """One assistant at one version (the current one unless read from its versions)."""

    assistant_id: str
    tenant_id: str | None
    """None for a graph's default assistant (every tenant's)."""
    graph_id: str
    version: int
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def system(self) -> bool:
        return self.tenant_id is None

    def to_json(self, *, version_only: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {
            "assistant_id": self.assistant_id,
            "graph_id": self.graph_id,
            "config": self.config,
            "context": self.context,
            "metadata": self.metadata,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }
        if not version_only:
            found["updated_at"] = self.updated_at.isoformat()
        return found


def _row(row: Any) -> Assistant:
    m = row._mapping
    return Assistant(
        assistant_id=m["assistant_id"],
        tenant_id=m["tenant_id"],
        graph_id=m["graph_id"],
        version=m["version"],
        name=m["name"],
        description=m["description"],
        config=m["config"] or {},
        context=m["context"] or {},
        metadata=m["metadata"] or {},
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m.get("updated_at") or m["created_at"]),
    )


def _version_values(a: Assistant) -> dict[str, Any]:
    return {
        "assistant_id": a.assistant_id,
        "version": a.version,
        "tenant_id": a.tenant_id,
        "graph_id": a.graph_id,
        "name": a.name,
        "description": a.description,
        "config": a.config,
        "context": a.context,
        "metadata": a.metadata,
        "created_at": a.updated_at,
    }


class AssistantStore:
    """The `keel_assistants` and `keel_assistant_versions` tables; every query names its tenant."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, a: Assistant) -> bool:
        """Insert a new assistant at version 1; False when its id is taken."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    assistants.insert().values(
                        **{**_version_values(a), "created_at": a.created_at},
                        updated_at=a.updated_at,
                    )
                )
                await conn.execute(assistant_versions.insert().values(**_version_values(a)))
        except IntegrityError:
            return False
        return True

    async def exists(self, assistant_id: str) -> bool:
        """Whether any tenant has this assistant id."""
        query = select(assistants.c.assistant_id).where(assistants.c.assistant_id == assistant_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def get(self, assistant_id: str, tenant_id: str) -> Assistant | None:
        query = select(assistants).where(
            assistants.c.assistant_id == assistant_id, assistants.c.tenant_id == tenant_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _row(row) if row else None

    async def all(self, tenant_id: str) -> list[Assistant]:
        query = select(assistants).where(assistants.c.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def new_version(self, current: Assistant, changes: Mapping[str, Any]) -> Assistant:
        """Record `current` with `changes` as its next version and make it current."""
        for _ in range(3):  # two updates racing for the same number: the loser goes next
            try:
                async with self.engine.begin() as conn:
                    latest = (
                        await conn.execute(
                            select(func.max(assistant_versions.c.version)).where(
                                assistant_versions.c.assistant_id == current.assistant_id
                            )
                        )
                    ).scalar_one()
                    at = now()
                    made = replace(current, **changes, version=int(latest or 0) + 1, updated_at=at)
                    await conn.execute(assistant_versions.insert().values(**_version_values(made)))
                    await self._make_current(conn, made)
                return made
            except IntegrityError:
                continue
        raise Conflict(f"assistant {current.assistant_id} is being updated; retry")

    async def _make_current(self, conn: Any, a: Assistant) -> None:
        values = _version_values(a)
        values.pop("created_at")
        await conn.execute(
            update(assistants)
            .where(
                assistants.c.assistant_id == a.assistant_id,
                assistants.c.tenant_id == a.tenant_id,
            )
            .values(**values, updated_at=a.updated_at)
        )

    async def versions(self, assistant_id: str, tenant_id: str) -> list[Assistant]:
        """Every version, newest first."""
        query = (
            select(assistant_versions)
            .where(
                assistant_versions.c.assistant_id == assistant_id,
                assistant_versions.c.tenant_id == tenant_id,
            )
            .order_by(assistant_versions.c.version.desc())
        )
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def set_latest(self, current: Assistant, version: int) -> Assistant | None:
        """Make `version` current again; None when the assistant never had it."""
        found = await self.versions(current.assistant_id, current.tenant_id or "")
        chosen = next((v for v in found if v.version == version), None)
        if chosen is None:
            return None
        made = replace(chosen, created_at=current.created_at, updated_at=now())
        async with self.engine.begin() as conn:
            await self._make_current(conn, made)
        return made

    async def delete(self, assistant_id: str, tenant_id: str) -> bool:
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(assistants).where(
                    assistants.c.assistant_id == assistant_id,
                    assistants.c.tenant_id == tenant_id,
                )
            )
            await conn.execute(
                delete(assistant_versions).where(
                    assistant_versions.c.assistant_id == assistant_id,
                    assistant_versions.c.tenant_id == tenant_id,
                )
            )
        return bool(gone.rowcount)


@dataclass
class Assistants:
    """The assistants a tenant sees: every graph's default, and its own."""

    store: AssistantStore
    graphs: ServedGraphs

    def defaults(self) -> list[Assistant]:
        found = []
        for graph_id in self.graphs.listed:
            served = self.graphs.graphs[graph_id]
            found.append(
                Assistant(
                    assistant_id=default_assistant_id(graph_id),
                    tenant_id=None,
                    graph_id=graph_id,
                    version=1,
                    name=graph_id,
                    description=served.description or None,
                    config={},
                    context={},
                    metadata={"created_by": SYSTEM},
                    created_at=EPOCH,
                    updated_at=EPOCH,
                )
            )
        return found

    def default_for(self, ref: str) -> Assistant | None:
        """The default assistant `ref` names: its id or its graph's id, or the id or graph id
        of an alias of that graph (`agent` for the built-in data assistant)."""
        by_graph = {id(self.graphs.graphs[a.graph_id]): a for a in self.defaults()}
        for graph_id, served in self.graphs.graphs.items():
            if ref in (graph_id, default_assistant_id(graph_id)):
                return by_graph.get(id(served))
        return None

    async def get(self, ref: str, tenant_id: str) -> Assistant:
        """The assistant `ref` names for this tenant (an id, or a graph id); 404 otherwise."""
        found = self.default_for(ref) or await self.store.get(ref, tenant_id)
        if found is None:
            known = ", ".join(self.graphs.listed)
            raise NotFound(f"assistant {ref} not found (graphs: {known})")
        return found

    async def search(
        self,
        tenant_id: str,
        *,
        graph_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> list[Assistant]:
        """The tenant's matching assistants, defaults first (not yet sorted)."""
        found = [*self.defaults(), *await self.store.all(tenant_id)]
        if graph_id:
            served = self.graphs.get(graph_id)
            found = [
                a
                for a in found
                if a.graph_id == graph_id
                or (served is not None and self.graphs.graphs.get(a.graph_id) is served)
            ]
        if metadata:
            found = [a for a in found if metadata_matches(a.metadata, dict(metadata))]
        if name:
            found = [a for a in found if name.lower() in a.name.lower()]
        return found

    @staticmethod
    def new(
        tenant_id: str,
        graph_id: str,
        *,
        assistant_id: str | None,
        name: str | None,
        description: str | None,
        config: dict[str, Any],
        context: dict[str, Any],
        metadata: dict[str, Any],
    ) -> Assistant:
        at = now()
        return Assistant(
            assistant_id=assistant_id or str(uuid.uuid4()),
            tenant_id=tenant_id,
            graph_id=graph_id,
            version=1,
            name=name or "Untitled",
            description=description,
            config=config,
            context=context,
            metadata=metadata,
            created_at=at,
            updated_at=at,
        )

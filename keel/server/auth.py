"""Who is calling: API keys (sent as `x-api-key`) resolve to a tenant and a role.

Keys are stored as SHA-256 digests and looked up by digest; a short in-memory cache keeps
a hot key from costing a query per request. Without `KEEL_SERVICE__REQUIRE_API_KEY` a
request without a key acts as tenant `default` with the `admin` role (embedded use).
Every thread and run belongs to a tenant: another tenant's ids are simply not found (404),
and a thread id is the tenant's own (another tenant may create one of the same id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from keel.config import ServiceSettings
from keel.server.errors import Unauthorized
from keel.server.store import DEFAULT_TENANT, Store, through_outage

if TYPE_CHECKING:
    from keel.nodes import AgentContext

__all__ = ["DEFAULT_TENANT", "Authenticator", "Principal", "context_for_role"]

_CACHE_TTL_S = 30.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """The tenant every record a request touches belongs to, and the role that picks tools."""

    tenant_id: str
    role: str = "admin"


class Authenticator:
    """Resolves the `x-api-key` header to a `Principal`."""

    def __init__(self, store: Store, settings: ServiceSettings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, api_key: str | None) -> Principal:
        if not api_key:
            if self.settings.require_api_key:
                raise Unauthorized("send an API key in the x-api-key header")
            return Principal(DEFAULT_TENANT, "admin")
        found = await self._lookup(api_key)
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found

    async def _lookup(self, api_key: str) -> Principal | None:
        hit = self._cache.get(api_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        # a Postgres restart delays the check instead of failing it (the wait is bounded)
        key = await through_outage(
            lambda: self.store.find_key(api_key),
            within_s=self.settings.admission_outage_wait_s,
        )
        found = Principal(key.tenant_id, key.role) if key else None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[api_key] = (time.monotonic() + _CACHE_TTL_S, found)
        return found


def context_for_role(context: AgentContext, settings: ServiceSettings, role: str) -> AgentContext:
    """The run context with only the tools `role` may use (no tools for an unknown role)."""
    allowed = settings.roles.get(role, ())
    if "*" in allowed:
        return context
    return replace(context, tools=context.tools.subset(n for n in allowed if n in context.tools))

"""Operator commands behind `keel serve` and `keel keys …` (the CLI stays a thin shell)."""

from __future__ import annotations

from typing import Any

from keel.config import Settings
from keel.errors import UsageError
from keel.server.store import Store, service_db_url

__all__ = ["create_key", "revoke_key", "serve"]


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    project: Any = None,
) -> None:
    """Run the API under uvicorn until interrupted, serving `project`'s graphs."""
    import uvicorn

    from keel.runtime.gc_tuning import freeze_startup_objects, tune_gc
    from keel.server.app import create_app

    app = create_app(settings, project=project)
    tune_gc(settings.service.gc_gen0_threshold)
    freeze_startup_objects()
    uvicorn.run(
        app,
        host=host or settings.service.host,
        port=settings.service.port if port is None else port,
        access_log=False,
        log_config=None,
    )


def _tenant_ok(tenant: str) -> None:
    if not tenant or len(tenant) > 128 or not tenant.replace("-", "").replace("_", "").isalnum():
        raise UsageError("tenant must be 1-128 letters, digits, '-' or '_'")


async def create_key(settings: Settings, tenant: str, role: str) -> dict[str, Any]:
    """A new API key for `tenant` with `role`; the secret is shown only here."""
    _tenant_ok(tenant)
    roles = settings.service.roles
    if role not in roles:
        raise UsageError(f"unknown role '{role}'; known: {', '.join(sorted(roles))}")
    store = Store.open(service_db_url(settings))
    try:
        await store.migrate()
        key = await store.create_key(tenant, role)
    finally:
        await store.close()
    return {"key_id": key.key_id, "tenant": tenant, "role": role, "api_key": key.secret}


async def revoke_key(settings: Settings, key_id: str) -> bool:
    store = Store.open(service_db_url(settings))
    try:
        await store.migrate()
        return await store.revoke_key(key_id)
    finally:
        await store.close()

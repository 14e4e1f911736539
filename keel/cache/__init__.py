"""Caches with TTLs and tenant-scoped keys: model responses, tool results, whole runs.

Backends: in-memory (default), SQLite, Redis. `open_caches(settings)` builds the configured
one; a Redis outage degrades to cache misses and never fails a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.cache.backends import CacheBackend, MemoryBackend, SqliteBackend
from keel.cache.caches import (
    CACHE_HIT,
    MODEL_RESPONSE_CACHE,
    Caches,
    ModelResponseCache,
    attach_model_cache,
    cache_key,
    cache_scope,
    normalize_question,
)
from keel.config import Settings
from keel.errors import ConfigError

if TYPE_CHECKING:
    from keel.cache._redis import RedisBackend


def __getattr__(name: str) -> Any:
    """`RedisBackend` on first use: `redis` is imported only where Redis is used."""
    if name == "RedisBackend":
        from keel.cache._redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CACHE_HIT",
    "MODEL_RESPONSE_CACHE",
    "CacheBackend",
    "Caches",
    "MemoryBackend",
    "ModelResponseCache",
    "RedisBackend",
    "SqliteBackend",
    "attach_model_cache",
    "cache_key",
    "cache_scope",
    "normalize_question",
    "open_backend",
    "open_caches",
]


def open_backend(settings: Settings, *, namespace: str = "keel") -> CacheBackend | None:
    """The configured backend (None for `none`); nothing connects until first use."""
    cache = settings.cache
    if cache.backend == "none":
        return None
    if cache.backend == "memory":
        return MemoryBackend(cache.max_entries)
    if cache.backend == "sqlite":
        return SqliteBackend(cache.path or settings.home / "cache.sqlite")
    if settings.redis_url is None:
        raise ConfigError("KEEL_CACHE__BACKEND=redis needs KEEL_REDIS_URL")
    from keel.cache._redis import RedisBackend

    return RedisBackend(settings.redis_url, namespace=namespace)


def open_caches(settings: Settings, *, namespace: str = "keel") -> Caches:
    """The agent's caches over the configured backend (close with `aclose`)."""
    return Caches(open_backend(settings, namespace=namespace), settings.cache)

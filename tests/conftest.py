"""Shared fixtures: savers (memory / SQLite / Postgres), settings and agent builders."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from langchain_core.language_models import BaseChatModel

from keel.config import Settings, load_settings

# Property tests are derandomized (CI replays the same examples) and never fail for being slow
# on a loaded machine: a verdict must not depend on what else the CPU is doing.
settings.register_profile(
    "keel", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("keel")

PG_ADMIN_URL = os.environ.get("KEEL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def require_service(name: str, problem: Exception) -> None:
    """Missing Postgres/Redis: a failure under CI, a skip on a developer's machine."""
    message = f"{name} is not reachable: {problem}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_database(prefix: str) -> Iterator[tuple[str, str]]:
    """A new empty database on the local PostgreSQL server, dropped afterwards: its URL and
    name. An unreachable server is a failure under CI, a skip elsewhere."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", exc)
    try:
        yield _pg_url(name), name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session on the local PostgreSQL server."""
    with fresh_database("keel_test") as (url, _):
        yield url


REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis server (a failure under CI when it is down, else a skip)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so parallel runs never share Redis keys."""
    return f"keeltest:{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def checkpoint_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every graph test runs once per saver."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'checkpoints.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for tests: sample DB under tmp_path, no waiting between retries."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("home", tmp_path / "home")
        overrides.setdefault("model", "scripted:echo")
        overrides.setdefault("checkpoint_url", "memory://")
        overrides.setdefault("retry", {"initial_s": 0.0, "max_s": 0.0})
        return load_settings(**overrides)

    return make


AgentFactory = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
def agent_factory(settings_factory: Callable[..., Settings], checkpoint_url: str) -> AgentFactory:
    """`async with agent_factory(model, tools=..., **settings) as agent:` on this test's saver."""
    from keel.runtime import open_agent

    @asynccontextmanager
    async def make(
        model: BaseChatModel | None = None, *, tools: Any = None, **overrides: Any
    ) -> AsyncIterator[Any]:
        overrides.setdefault("checkpoint_url", checkpoint_url)
        async with open_agent(settings_factory(**overrides), model=model, tools=tools) as agent:
            yield agent

    return make

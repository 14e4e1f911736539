"""Pool settings reach the psycopg pool; retention policies refuse nonsense."""

from __future__ import annotations

import pytest

from keel.checkpoints.outage import is_storage_outage
from keel.checkpoints.retention import RetentionPolicy
from keel.checkpoints.savers import make_pool
from keel.config import CheckpointPoolSettings, load_settings
from keel.errors import ConfigError, StorageUnavailableError, UsageError


def test_pool_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_CHECKPOINT_POOL__MAX_SIZE", "3")
    monkeypatch.setenv("KEEL_CHECKPOINT_POOL__HEALTH_CHECK", "false")
    pool = load_settings().checkpoint_pool
    assert pool.max_size == 3 and not pool.health_check and pool.prepare_threshold is None
    monkeypatch.setenv("KEEL_CHECKPOINT_POOL__MAX_SIZE", "0")
    with pytest.raises(ConfigError, match="KEEL_CHECKPOINT_POOL__MAX_SIZE"):
        load_settings()


def test_make_pool_is_pgbouncer_safe_and_health_checked() -> None:
    settings = CheckpointPoolSettings(min_size=2, max_size=5, timeout_s=3, max_idle_s=60)
    pool = make_pool("postgresql://postgres@127.0.0.1:5432/x", settings)
    assert (pool.min_size, pool.max_size, pool.timeout, pool.max_idle) == (2, 5, 3, 60)
    assert pool.kwargs["prepare_threshold"] is None, "no server-side prepared statements"
    assert pool.kwargs["autocommit"] is True
    assert pool._check is not None
    unchecked = make_pool("postgresql://x", CheckpointPoolSettings(health_check=False))
    assert unchecked._check is None


def test_outage_classifier() -> None:
    import sqlite3

    import psycopg

    assert is_storage_outage(psycopg.OperationalError("server closed the connection"))
    assert is_storage_outage(StorageUnavailableError("down"))
    assert is_storage_outage(sqlite3.OperationalError("database is locked"))
    assert not is_storage_outage(sqlite3.OperationalError("no such table: x"))
    assert not is_storage_outage(ValueError("bug"))


def test_retention_policy_validation() -> None:
    with pytest.raises(UsageError):
        RetentionPolicy(keep_last=0)
    with pytest.raises(UsageError):
        RetentionPolicy(idle_s=-1)
    assert RetentionPolicy(keep_last=1, idle_s=0).keep_last == 1

"""Keel's own tables: tenants, API keys, threads, runs, crons and assistants.
(Checkpoints live elsewhere.)

The schema is owned by the Alembic migrations beside this module; these `Table` objects
describe it for queries. Table names carry a `keel_` prefix so they can share a Postgres
database with the checkpointer's tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "api_keys",
    "assistant_versions",
    "assistants",
    "crons",
    "metadata",
    "runs",
    "tenants",
    "threads",
]

metadata = MetaData()

tenants = Table(
    "keel_tenants",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "keel_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant_id", String(128), ForeignKey("keel_tenants.tenant_id"), nullable=False),
    Column("role", String(64), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

THREAD_KEY_LENGTH = 300
"""A thread's key: its tenant's id (up to 128), a `/` and its own id (up to 128)."""

threads = Table(
    "keel_threads",
    metadata,
    Column("thread_id", String(128), primary_key=True),
    Column("tenant_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("thread_key", String(THREAD_KEY_LENGTH), nullable=False),
    Index("ix_keel_threads_tenant", "tenant_id", "created_at"),
    Index("ux_keel_threads_key", "thread_key", unique=True),
)
"""A thread: its id is its tenant's (two tenants may use the same one); its key names it in
the checkpoints, the journal and `keel_runs` (see `keel.server.store`)."""

runs = Table(
    "keel_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("thread_id", String(THREAD_KEY_LENGTH), nullable=False),
    Column("tenant_id", String(128), nullable=False),
    Column("assistant_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("multitask_strategy", String(16), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("kwargs", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_keel_runs_thread", "thread_id", "created_at"),
    Index("ix_keel_runs_status", "status"),
)

crons = Table(
    "keel_crons",
    metadata,
    Column("cron_id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("role", String(64), nullable=False),
    Column("thread_id", String(128), nullable=True),
    Column("assistant_id", String(64), nullable=False),
    Column("schedule", String(128), nullable=False),
    Column("timezone", String(64), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("on_run_completed", String(16), nullable=True),
    Column("next_run_at", DateTime(timezone=True), nullable=True),
    Column("end_time", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_keel_crons_tenant", "tenant_id", "created_at"),
    Index("ix_keel_crons_due", "next_run_at"),
)

assistants = Table(
    "keel_assistants",
    metadata,
    Column("assistant_id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("graph_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=True),
    Column("config", JSON, nullable=False),
    Column("context", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_keel_assistants_tenant", "tenant_id", "created_at"),
)
"""An assistant as it is now: the fields of its current (latest-set) version."""

assistant_versions = Table(
    "keel_assistant_versions",
    metadata,
    Column("assistant_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("graph_id", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=True),
    Column("config", JSON, nullable=False),
    Column("context", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
"""Every version an assistant has had (an update adds one; none is ever changed)."""

"""Settings, read once at the entry point from `KEEL_*` environment variables.

Library code never reads `os.environ`: the entry points (`keel.runtime`, `keel.cli`,
`keel.server`) call `load_settings()` once and pass the result down as the LangGraph runtime
context. Nested groups use a double underscore: `KEEL_LIMITS__MAX_ITERATIONS=12`.
Every field's docstring is its documentation: `docs/configuration.md` is generated from them
(`python -m keel.config_doc --write docs/configuration.md`).
"""

# No `from __future__ import annotations`: pydantic would evaluate ~150 string annotations
# (a `compile` each) when the models are built at import, ~10 M instructions of `keel run`.
import copy
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from keel.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRICING",
    "TIER_NAMES",
    "ArtifactSettings",
    "BreakerSettings",
    "CacheSettings",
    "CheckpointPoolSettings",
    "CompactionSettings",
    "CostSettings",
    "DegradationSettings",
    "LimitSettings",
    "LocalModelSettings",
    "ModelPrice",
    "ObservabilitySettings",
    "RateLimitSettings",
    "RetrySettings",
    "ServiceSettings",
    "Settings",
    "SqlToolSettings",
    "TicketSettings",
    "TierSettings",
    "load_settings",
]

DEFAULT_MODEL = "local:qwen2.5-coder-1.5b"


class ModelPrice(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(frozen=True)

    input: float = Field(0.0, ge=0)
    """Price of one million prompt tokens."""
    output: float = Field(0.0, ge=0)
    """Price of one million completion tokens."""
    cached_input: float | None = Field(None, ge=0)
    """Price of one million cached prompt tokens (defaults to `input`)."""


DEFAULT_PRICING: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40, cached_input=0.025),
    "gpt-5": ModelPrice(input=1.25, output=10.00, cached_input=0.125),
    "gpt-5-mini": ModelPrice(input=0.25, output=2.00, cached_input=0.025),
    "gpt-5-nano": ModelPrice(input=0.05, output=0.40, cached_input=0.005),
    "o4-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.275),
}
"""Published list prices of common hosted models; local and scripted models cost 0."""


class LimitSettings(BaseModel):
    """Bounds on one run. Copied into the run's state at start, so resume keeps them."""

    model_config = ConfigDict(frozen=True)

    max_iterations: int = Field(8, ge=1, le=1000)
    """Reason→act→observe cycles before the run degrades to fallback."""
    max_model_attempts: int = Field(3, ge=1, le=20)
    """Model calls per step (first try + retries) before degrading."""
    max_repairs: int = Field(2, ge=0, le=20)
    """Malformed outputs repaired per step before degrading."""
    max_tool_attempts: int = Field(3, ge=1, le=20)
    """Runs of a failing idempotent tool call (first try + retries on transient errors)."""
    tool_timeout_s: float = Field(30.0, gt=0)
    """One tool call."""
    iteration_timeout_s: float = Field(120.0, gt=0)
    """One reason→act→observe cycle. Not for `local:` models: their calls are timed by
    progress (`KEEL_LOCAL__STALL_TIMEOUT_S`), their tools by `tool_timeout_s`."""
    model_timeout_s: float = Field(120.0, gt=0)
    """One model call. Not for `local:` models: their calls fail when the server stops making
    progress (`KEEL_LOCAL__STALL_TIMEOUT_S`) or at the run's deadline."""
    run_timeout_s: float = Field(600.0, gt=0)
    """The whole run, as an absolute deadline stored in the state."""


class RetrySettings(BaseModel):
    """Exponential backoff with full jitter between model retries."""

    model_config = ConfigDict(frozen=True)

    initial_s: float = Field(0.5, ge=0)
    """Cap of the first wait."""
    max_s: float = Field(8.0, ge=0)
    """Cap of any wait."""
    multiplier: float = Field(2.0, ge=1)
    """Growth of the cap per attempt."""


class BreakerSettings(BaseModel):
    """Circuit breakers per model and per tool: a failure rate over a time window."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    """Off: every call is made, however often the callee failed."""
    window_s: float = Field(60.0, gt=0)
    """Calls older than this no longer count."""
    min_calls: int = Field(20, ge=1)
    """Calls in the window before the failure rate can open the breaker."""
    failure_rate: float = Field(0.5, gt=0, le=1)
    """Share of failed calls in the window that opens the breaker."""
    open_s: float = Field(30.0, gt=0)
    """How long an open breaker refuses calls before letting a probe through (half-open)."""
    half_open_calls: int = Field(1, ge=1)
    """Probe calls let through while half-open; one failure re-opens, all passing closes."""
    shared_closed_ttl_s: float = Field(1.0, ge=0, le=60)
    """With breakers in Redis: a process that just found a breaker closed lets calls through
    for this long without asking Redis again (outcomes are still recorded on every call), so
    a breaker opened by another process stops this one within this delay. 0: ask every call."""


class DegradationSettings(BaseModel):
    """What `fallback` tries before a clean failure (see `keel.resilience.degrade`)."""

    model_config = ConfigDict(frozen=True)

    tiers: bool = True
    """After a model failure, try the other configured tiers (cheaper first)."""
    direct_answer: bool = True
    """Then one call without tools that answers from the observations so far."""


class RateLimitSettings(BaseModel):
    """Self-imposed limits (unset: none). Redis-backed when `redis_url` is set."""

    model_config = ConfigDict(frozen=True)

    model_requests_per_minute: int | None = Field(None, ge=1)
    """Calls per model per minute."""
    model_tokens_per_minute: int | None = Field(None, ge=1)
    """Estimated prompt tokens plus `max_tokens` per model per minute."""
    tenant_runs_per_minute: int | None = Field(None, ge=1)
    """Runs a tenant may start per minute."""
    model_concurrency: int | None = Field(None, ge=1)
    """Calls to one model in flight at once (across workers when Redis is set)."""
    max_wait_s: float = Field(30.0, ge=0)
    """How long a call may wait for a limit before the step degrades."""


class SqlToolSettings(BaseModel):
    """The `sql_query` tool's guard rails."""

    model_config = ConfigDict(frozen=True)

    allowed_tables: tuple[str, ...] = ("customers", "products", "orders", "order_items")
    """Tables a query may read, named as the database stores them (Postgres keeps an unquoted
    `CREATE TABLE Orders` as `orders`; SQLite ignores case)."""
    row_cap: int = Field(200, ge=1, le=100_000)
    """Rows returned at most (the result says when it was cut)."""
    max_result_bytes: int = Field(256_000, ge=1_000, le=100_000_000)
    """Bytes of values returned at most: fetching stops past it and the result says so; a
    single row (or SQLite value) over it is refused."""
    statement_timeout_s: float = Field(5.0, gt=0)
    """A query running longer is cancelled."""
    allow_superuser: bool = False
    """Let the tool run on a Postgres superuser connection. Off: such a connection is refused;
    production connects as the least-privilege role `keel sql-role` creates."""
    notes: str | None = Field(None, max_length=4000)
    """Business rules the schema does not show, told to the model with the schema."""
    examples: str | None = None
    """Verified question → SQL examples, a JSON file (`keel.tools.sql_examples`): the planned
    flow shows the 3 most like the question where the model writes its query. Unset: the
    bundled sample database's examples when the tool reads that sample, none otherwise;
    `off`: none."""


class ArtifactSettings(BaseModel):
    """Where agents' artifacts (reports, charts) are stored (`keel.artifacts`)."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None
    """The artifact store: `file:///path` (a local folder). Unset: `<home>/artifacts`."""
    max_bytes: int = Field(20_000_000, ge=1_000, le=2_000_000_000)
    """Largest single artifact accepted."""

    @field_validator("url")
    @classmethod
    def _known_artifact_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("file://"):
            raise ValueError("expected file:///path (a local folder)")
        return value


class TicketSettings(BaseModel):
    """The help desk's database and the ticket tools' limits (the `ticket_desk` agent)."""

    model_config = ConfigDict(frozen=True)

    url: str = "sqlite:///{home}/helpdesk.sqlite"
    """The help desk's tables (tickets, comments, customers, refunds, articles):
    `sqlite:///path` or `postgresql://…` (`{home}` stands for `KEEL_HOME`). An empty database
    gets the tables and a deterministic sample data set on first use."""
    refund_approval_usd: float = Field(100.0, ge=0)
    """Refunds above this amount wait for a human's approval (`refund_order_large`);
    `refund_order` refuses them."""
    max_rows: int = Field(20, ge=1, le=1000)
    """Rows one search returns at most (the result says when there were more)."""
    max_result_bytes: int = Field(16_000, ge=1_000, le=1_000_000)
    """Characters of one tool result at most (long texts are cut, and say so)."""
    timeout_s: float = Field(5.0, gt=0)
    """Seconds a statement may wait for a lock or a connection."""
    sample_data: bool = True
    """Fill an empty help desk with the deterministic sample data, linked to the SQL tool's
    database (re-made when that sample is). Turn it off for a real help desk."""


class ReviewSettings(BaseModel):
    """The code reviewer's git tools and its reviews table (the `code_reviewer` agent)."""

    model_config = ConfigDict(frozen=True)

    url: str = "sqlite:///{home}/reviews.sqlite"
    """The reviews table (the comments the agent posts): `sqlite:///path` or
    `postgresql://…` (`{home}` stands for `KEEL_HOME`); created on first use."""
    roots: tuple[Path, ...] = ()
    """Folders the reviewed repositories must lie in (a repository elsewhere is refused).
    Empty: any git repository the process can read."""
    max_files: int = Field(100, ge=1, le=10_000)
    """Changed files one listing returns at most (the result says when there were more)."""
    max_result_chars: int = Field(12_000, ge=1_000, le=1_000_000)
    """Characters of one diff, file or linter result at most (the result says where it was
    cut and how to read on)."""
    max_file_bytes: int = Field(1_000_000, ge=1_000, le=100_000_000)
    """Larger files are not read or linted (the result says so)."""
    git_timeout_s: float = Field(20.0, gt=0)
    """Seconds one `git` command may run."""
    lint_timeout_s: float = Field(60.0, gt=0, le=100)
    """Seconds the linter (`ruff check`) may run on a change's files (the `run_linter` call
    as a whole is stopped after 120)."""
    lint_select: tuple[str, ...] = ("E4", "E7", "E9", "F", "B", "S")
    """The ruff rules the linter runs (`--select`); the repository's own ruff configuration
    is ignored, so a change cannot switch rules off."""
    lint_ignore: tuple[str, ...] = ("S101",)
    """Ruff rules left out (`--ignore`)."""
    timeout_s: float = Field(5.0, gt=0)
    """Seconds a statement on the reviews table may wait for a lock or a connection."""


TIER_NAMES = ("simple", "standard", "complex")
"""Model tiers, cheapest first. The names are persisted in checkpoints (state key `tier`)."""


class TierSettings(BaseModel):
    """Model specs per tier. `standard` defaults to `KEEL_MODEL`; unset tiers are skipped."""

    model_config = ConfigDict(frozen=True)

    simple: str | None = None
    """A cheap model for short lookups (also summarizes history during compaction)."""
    standard: str | None = None
    """The everyday model; `KEEL_MODEL` when unset."""
    complex: str | None = None
    """The strongest model, for multi-step analysis and after repeated failures."""

    @field_validator("simple", "standard", "complex")
    @classmethod
    def _spec_shape(cls, value: str | None) -> str | None:
        if value is not None:
            provider, sep, name = value.partition(":")
            if not sep or not provider or not name:
                raise ValueError("expected '<provider>:<model>', e.g. 'openai:gpt-4.1-nano'")
        return value


class CostSettings(BaseModel):
    """Per-run budgets, the per-tenant daily budget and how the tier router behaves."""

    model_config = ConfigDict(frozen=True)

    run_usd: float | None = Field(None, ge=0)
    """USD one run may spend on model calls (unset: no limit)."""
    run_tokens: int | None = Field(None, ge=1)
    """Tokens (prompt + completion) one run may use."""
    run_model_calls: int | None = Field(None, ge=1)
    """Model calls one run may make."""
    tenant_daily_usd: float | None = Field(None, ge=0)
    """USD one tenant may spend per UTC day, across all its runs."""
    routing: bool = True
    """Pick the starting tier from the task; off: always start at `standard`."""
    escalate_after: int = Field(2, ge=1, le=20)
    """Malformed replies or failed calls in one step before moving up one tier."""


class CacheSettings(BaseModel):
    """Model-response, tool-result and whole-run caches (keys are scoped by tenant)."""

    model_config = ConfigDict(frozen=True)

    backend: Literal["none", "memory", "sqlite", "redis"] = "memory"
    """Where cached entries live; `redis` uses `KEEL_REDIS_URL`."""
    path: Path | None = None
    """SQLite file for the `sqlite` backend (default: `<home>/cache.sqlite`)."""
    ttl_s: float = Field(3600.0, gt=0)
    """How long an entry stays valid."""
    model_responses: bool = False
    """Cache model replies (only when `temperature` is 0): identical prompts are not re-sent."""
    tool_results: bool = True
    """Cache results of tools declared `cacheable`."""
    runs: bool = False
    """Cache whole successful runs by normalized question + tenant + tool-set version."""
    max_entries: int = Field(10_000, ge=1)
    """Entries kept by the in-memory backend (least recently used go first)."""


class CompactionSettings(BaseModel):
    """Keeping the prompt small: trim old tool outputs, summarize the middle of the history."""

    model_config = ConfigDict(frozen=True)

    max_prompt_tokens: int = Field(6000, ge=200)
    """Above this estimate the history is compacted."""
    keep_last: int = Field(4, ge=1)
    """Most recent messages always kept verbatim."""
    tool_output_chars: int = Field(4000, ge=100)
    """A tool output longer than this is cut, with a marker saying how much was dropped."""
    old_tool_output_chars: int = Field(300, ge=50)
    """Tool outputs older than the kept tail are trimmed to this during compaction."""
    summarize: bool = True
    """Summarize the dropped middle with the cheapest tier (else an extractive digest)."""


class LocalModelSettings(BaseModel):
    """The embedded `local:` model server and how its calls are timed.

    A local call is not cut off after a fixed time: on a busy machine it is slow, not stuck.
    It streams, and fails only when the server shows no progress (no prompt batch, no token)
    for `stall_timeout_s`, or at the run's deadline (`KEEL_LIMITS__RUN_TIMEOUT_S`); the model
    and iteration timeouts (`KEEL_LIMITS__MODEL_TIMEOUT_S`, `…__ITERATION_TIMEOUT_S`) apply to
    hosted models only.
    """

    model_config = ConfigDict(frozen=True)

    stall_timeout_s: float = Field(60.0, gt=0)
    """A local call fails when the server made no progress on any of this process's calls
    for this long (a call queued behind another one waits while that one progresses)."""
    threads: int | None = Field(None, ge=1, le=64)
    """CPU threads of the server. Unset: every core (at most 8), or 1 when the load average is
    already at the core count as the server starts (with the load at ~20 on 2 cores, one
    thread was 4x faster than two: its threads wait for each other at every step)."""
    batch_tokens: int = Field(512, ge=32, le=8192)
    """Prompt tokens per batch: the server reports progress after each batch, so a long prompt
    on a busy machine keeps showing progress."""


DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("*",),
    "member": ("*",),
    "calculator": ("calculator",),
}
"""API-key roles and the tools each may use (`*`: all)."""


class ServiceSettings(BaseModel):
    """The HTTP API (`keel serve`), its admission control and its workers."""

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    """Address `keel serve` binds."""
    port: int = Field(8123, ge=0, le=65535)
    """Port `keel serve` listens on."""
    db_url: str | None = None
    """Keel's own tables (tenants, API keys, threads, runs): `sqlite:///path` or
    `postgresql://…`. Unset: the checkpoint database when it is Postgres, else
    `<home>/service.sqlite`."""
    require_api_key: bool = False
    """Refuse requests without a valid `x-api-key` (off: everything is tenant `default`)."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Larger request bodies get 413."""
    gc_gen0_threshold: int = Field(50_000, ge=0)
    """Allocations between two collections of Python's youngest generation in `keel serve`
    and `keel worker` (0: Python's default, 700). See `keel.runtime.gc_tuning`."""
    db_pool_size: int = Field(10, ge=1, le=500)
    """Postgres connections each process keeps to Keel's tables. A statement beyond them
    waits for one: opening and closing extra connections under load costs Postgres a
    backend start each."""
    max_in_flight: int = Field(32, ge=1)
    """Runs executing at once across the service; more wait in the queue."""
    max_queued: int = Field(256, ge=0)
    """Runs waiting to start; past it new runs get 429 with Retry-After. The per-tenant
    rate is `KEEL_RATE_LIMITS__TENANT_RUNS_PER_MINUTE`."""
    admission_outage_wait_s: float = Field(10.0, ge=0, le=300)
    """How long a request that starts a run (and any request's API-key check) waits out a
    database outage, such as a Postgres restart, before it gets 503 with Retry-After: the run
    is admitted once the database is back, and the client notices only the delay (0: answer
    503 at once)."""
    stream_buffer_events: int = Field(10_000, ge=100, le=1_000_000)
    """Stream events an API process keeps per run it executes, for joins and `Last-Event-ID`
    reconnects: the last N (older ones are dropped; a reconnect behind them gets 410)."""
    queue: Literal["inprocess", "procrastinate"] = "inprocess"
    """Where background runs execute: in the API process, or on `keel worker`s via Postgres."""
    cron_tick_s: float = Field(10.0, gt=0, le=60)
    """How often each API process looks for due crons (one tick starts each due run once)."""
    worker_heartbeat_s: float = Field(5.0, gt=0, le=300)
    """How often a `keel worker` reports it is alive (and looks for dead workers' runs)."""
    worker_stalled_after_s: float = Field(30.0, gt=0, le=3600)
    """A worker silent this long is dead: its runs go back to the queue."""
    roles: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_ROLES))
    """Tools each API-key role may use (`*`: all); a key's role must be one of these."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Hosts a run's `webhook` URL may name (`hooks.example.com`, or `*.example.com` for its
    subdomains); empty: webhooks are refused (422). Guards against requests to internal
    addresses (SSRF)."""
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    """Timeout of one webhook POST (connect, read and write each)."""
    webhook_attempts: int = Field(5, ge=1, le=20)
    """POSTs at most per webhook: a 5xx, 429, timeout or connection error is tried again."""
    webhook_backoff_s: float = Field(1.0, ge=0, le=60)
    """Wait before the second attempt, doubled after each (capped at 30 s)."""
    webhook_drain_s: float = Field(10.0, ge=0, le=300)
    """At shutdown, how long pending webhooks may still take; then they are dropped (logged)."""

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _hosts_lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.strip().lower().rstrip(".") for h in value if h.strip())


class ObservabilitySettings(BaseModel):
    """Logs, metrics and LangSmith tracing."""

    model_config = ConfigDict(frozen=True)

    log_format: Literal["auto", "json", "pretty"] = "auto"
    """`auto`: pretty in a terminal, one JSON object per line otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Events below this level are dropped."""
    redact_patterns: tuple[str, ...] = ()
    """Extra regular expressions whose matches are masked in every log line."""
    tracing: Literal["auto", "on", "off"] = "auto"
    """LangSmith tracing: `auto` follows `LANGSMITH_TRACING`; `on` / `off` override it."""
    trace_sample_rate: float = Field(1.0, ge=0, le=1)
    """Share of successful runs sent to LangSmith; failed and degraded runs are always sent."""
    trace_payloads: Literal["full", "light"] = "light"
    """`light` drops the whole-state inputs of node runs (model and tool runs stay complete)."""
    trace_project: str | None = None
    """LangSmith project (default: `LANGSMITH_PROJECT`, else `default`)."""
    trace_flush_timeout_s: float = Field(2.0, ge=0)
    """How long closing an agent waits for unsent traces; then they are dropped."""

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
        return value


class CheckpointPoolSettings(BaseModel):
    """The one `psycopg_pool.AsyncConnectionPool` Postgres checkpoints and the journal share."""

    model_config = ConfigDict(frozen=True)

    min_size: int = Field(1, ge=0)
    """Connections kept open when idle."""
    max_size: int = Field(10, ge=1)
    """Connections at most (size it below PgBouncer's or the server's limit)."""
    timeout_s: float = Field(10.0, gt=0)
    """How long a checkout (and the start-up connect) may wait for a connection."""
    max_idle_s: float = Field(300.0, gt=0)
    """An idle connection above `min_size` is closed after this long."""
    max_lifetime_s: float = Field(3600.0, gt=0)
    """A connection is replaced after this long (rebalances after failovers)."""
    health_check: bool = True
    """Check a connection before handing it out, so one killed by a server restart is
    replaced instead of failing the step."""
    health_check_interval_s: float = Field(1.0, ge=0)
    """A connection verified this recently is only checked for a server's farewell on its
    socket (no round trip); 0 checks with a query on every checkout."""
    prepare_threshold: int | None = Field(None, ge=0)
    """psycopg server-side prepared statements after N runs; unset (none) works behind
    PgBouncer in transaction mode."""


class Settings(BaseSettings):
    """Keel's configuration. Environment names are a public contract (docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix="KEEL_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    model: str = DEFAULT_MODEL
    """Model spec: `openai:<name>`, `local:<name>` or `scripted:<name>`."""
    model_tiers: TierSettings = TierSettings()
    """Model specs of the `simple` / `standard` / `complex` tiers the router picks from."""
    reasoning_mode: Literal["auto", "native", "react"] = "auto"
    """`native` tool calling, the `react` text protocol, or `auto` (native if supported)."""
    grounded_answers: bool = True
    """Reject (and repair) a final answer stating numbers no tool result or prompt contains."""
    compose_answers: Literal["auto", "always", "never"] = "auto"
    """Write the final answer in a separate tool-free call from the question and the tool
    results (`auto`: for `local:` models only)."""
    planned_queries: Literal["auto", "never"] = "auto"
    """Answer data questions by the planned flow (one checked SQL query, then an answer verified
    against its rows) where answers are composed and the agent's tools are `sql_query` and the
    calculator (`auto`), or always by the free tool loop (`never`)."""
    openai_base_url: str | None = None
    """Base URL of an OpenAI-compatible API."""
    openai_api_key: SecretStr | None = None
    """Key for that API (never logged)."""
    local: LocalModelSettings = LocalModelSettings()
    """The embedded `local:` model's server and the stall timeout of its calls."""
    temperature: float = Field(0.0, ge=0, le=2)
    """Sampling temperature of every model call (0: the most deterministic; the model-response
    cache is used only at 0)."""
    max_tokens: int = Field(1024, ge=1)
    """Completion tokens per model call."""
    checkpoint_url: str = "sqlite:///{home}/checkpoints.sqlite"
    """Where runs are checkpointed: `sqlite:///path`, `postgresql://…` or `memory://`
    (`{home}` in a SQLite path stands for `KEEL_HOME`)."""
    redis_url: str | None = None
    """Redis for shared caches, breakers and rate limits (optional)."""
    database_url: str | None = None
    """The SQL tool's database; unset means the bundled sample database."""
    home: Path = Path(".keel")
    """Keel's working folder: every default file lives under it (checkpoints, the sample
    database, the SQLite cache, the service's SQLite tables)."""
    durability: Literal["sync", "async", "exit"] = "sync"
    """When checkpoints are written; `sync` is the only mode safe against SIGKILL."""
    checkpoint_pool: CheckpointPoolSettings = CheckpointPoolSettings()
    """The Postgres connection pool of checkpoints and the journal."""
    approval_tools: tuple[str, ...] = ()
    """Tool names that need a human's approval for every call (besides the tools that
    declare `requires_approval` themselves)."""
    limits: LimitSettings = LimitSettings()
    """Iterations, attempts and timeouts of one run."""
    tool_threads: int | None = Field(None, ge=1, le=1024)
    """Sync tool calls (`isolation="thread"`, the default for a sync tool) running at once in
    the process, each on a thread of Keel's; more wait for one, their timeout running. Unset:
    as many as Python's default thread pool, min(32, cores + 4): more threads, all busy, cost
    CPU in hand-overs of the GIL. Raise it for sync tools that mostly wait (on the network),
    or make them `async`. Process-wide: set by each `open_agent` that has it set."""
    retry: RetrySettings = RetrySettings()
    """Backoff between retries."""
    sql: SqlToolSettings = SqlToolSettings()
    """The `sql_query` tool's guard rails."""
    observability: ObservabilitySettings = ObservabilitySettings()
    """Logs and LangSmith tracing."""
    breaker: BreakerSettings = BreakerSettings()
    """Circuit breakers per model and per tool."""
    rate_limits: RateLimitSettings = RateLimitSettings()
    """Keel's own limits on model calls and on runs per tenant."""
    degradation: DegradationSettings = DegradationSettings()
    """What `fallback` tries before a clean failure."""
    redis_prefix: str = "keel"
    """Prefix of every Redis key Keel writes (breakers, rate limits)."""
    service: ServiceSettings = ServiceSettings()
    """The HTTP API, its admission control and its workers."""
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    """Price overrides by model name, merged over the built-in table."""
    cost: CostSettings = CostSettings()
    """Budgets and the tier router."""
    cache: CacheSettings = CacheSettings()
    """Model-response, tool-result and whole-run caches."""
    compaction: CompactionSettings = CompactionSettings()
    """Keeping the prompt under a size."""
    tickets: TicketSettings = TicketSettings()
    """The help desk's database and the ticket tools (the `ticket_desk` agent)."""
    artifacts: ArtifactSettings = ArtifactSettings()
    """Where agents' artifacts (reports, charts) are stored."""
    review: ReviewSettings = ReviewSettings()
    """The code reviewer's git tools and reviews table (the `code_reviewer` agent)."""

    @field_validator("model")
    @classmethod
    def _model_has_provider(cls, value: str) -> str:
        provider, sep, name = value.partition(":")
        if not sep or not provider or not name:
            raise ValueError("expected '<provider>:<model>', e.g. 'openai:gpt-4o-mini'")
        return value

    @field_validator("checkpoint_url")
    @classmethod
    def _known_checkpoint_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://", "memory://")):
            raise ValueError("expected sqlite:///path, postgresql://… or memory://")
        return value

    @model_validator(mode="after")
    def _paths_under_home(self) -> "Settings":
        """`{home}` in the checkpoint URL becomes `KEEL_HOME`, so the default moves with it."""
        if self.checkpoint_url.startswith("sqlite://") and "{home}" in self.checkpoint_url:
            url = self.checkpoint_url.replace("{home}", self.home.as_posix())
            object.__setattr__(self, "checkpoint_url", url)  # frozen: set once, here
        return self

    def price_table(self) -> dict[str, ModelPrice]:
        """The built-in prices with the configured overrides on top."""
        return {**DEFAULT_PRICING, **self.pricing}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' sources in its order, the environment read through
        `_EnvOnce`; the `.env` source only when a file is named (it reads none by default,
        and would only walk every field again to find nothing)."""
        env: PydanticBaseSettingsSource = env_settings
        if type(env_settings) is EnvSettingsSource:
            env = _EnvOnce(env_settings)
        if isinstance(dotenv_settings, DotEnvSettingsSource) and dotenv_settings.env_file is None:
            return init_settings, env, file_secret_settings
        return init_settings, env, dotenv_settings, file_secret_settings


class _EnvOnce(PydanticBaseSettingsSource):
    """pydantic-settings' environment source, its values computed once per distinct
    environment and source options.

    `keel` loads the settings twice (for its logs, then after the project's `env` is applied,
    with the command's overrides); reading the environment walks every field and group
    (~60 % of a load). Any changed variable, such as one a project's `env` adds, is a new
    key; the overrides are the init source's and are never cached.
    """

    _cache: ClassVar[dict[tuple[Any, ...], dict[str, Any]]] = {}
    __name__ = "EnvSettingsSource"  # the name pydantic-settings files its values under

    def __init__(self, source: EnvSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self._source = source
        self._init_state = source._init_state

    def _key(self) -> tuple[Any, ...]:
        s = self._source
        options = (
            s.settings_cls,
            s.case_sensitive,
            s.env_prefix,
            getattr(s, "env_prefix_target", None),
            s.env_nested_delimiter,
            s.maxsplit,
            s.env_ignore_empty,
            s.env_parse_none_str,
            s.env_parse_enums,
        )
        return options, frozenset(s.env_vars.items())

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        key = self._key()
        values = self._cache.get(key)
        if values is None:
            if len(self._cache) >= 8:  # a long-lived process whose environment changes
                self._cache.clear()
            values = self._cache[key] = self._source()
        return copy.deepcopy(values)  # the settings never share a mutable value


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit overrides, failing fast.

    A validation failure becomes a `ConfigError` naming each bad field by its environment
    variable, e.g. `KEEL_LIMITS__MAX_ITERATIONS: Input should be greater than or equal to 1`.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = "__".join(str(part) for part in err["loc"]).upper()
            problems.append(f"KEEL_{path}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc

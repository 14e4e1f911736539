"""Settings, read once at the entry point from `KEEL_*` environment variables.

Library code never reads `os.environ`: the composition root (`keel.service`) calls
`load_settings()` once and passes the result down as the LangGraph runtime context.
Nested groups use a double underscore: `KEEL_LIMITS__MAX_ITERATIONS=12`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from keel.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRICING",
    "LimitSettings",
    "ModelPrice",
    "RetrySettings",
    "Settings",
    "SqlToolSettings",
    "load_settings",
]

DEFAULT_MODEL = "local:qwen2.5-coder-0.5b"


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
    tool_timeout_s: float = Field(30.0, gt=0)
    """One tool call."""
    iteration_timeout_s: float = Field(120.0, gt=0)
    """One reason→act→observe cycle."""
    model_timeout_s: float = Field(120.0, gt=0)
    """One model call."""
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


class SqlToolSettings(BaseModel):
    """The `sql_query` tool's guard rails."""

    model_config = ConfigDict(frozen=True)

    allowed_tables: tuple[str, ...] = ("customers", "products", "orders", "order_items")
    """Tables a query may read."""
    row_cap: int = Field(200, ge=1, le=100_000)
    """Rows returned at most (the result says when it was cut)."""
    statement_timeout_s: float = Field(5.0, gt=0)
    """A query running longer is cancelled."""


class Settings(BaseSettings):
    """Keel's configuration. Environment names are a public contract (see README)."""

    model_config = SettingsConfigDict(
        env_prefix="KEEL_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    model: str = DEFAULT_MODEL
    """Model spec: `openai:<name>`, `local:<name>` or `scripted:<name>`."""
    tiers: tuple[str, ...] = ()
    """Model specs to degrade through, best first (after `model`)."""
    reasoning_mode: Literal["auto", "native", "react"] = "auto"
    """`native` tool calling, the `react` text protocol, or `auto` (native if supported)."""
    openai_base_url: str | None = None
    """Base URL of an OpenAI-compatible API."""
    openai_api_key: SecretStr | None = None
    """Key for that API (never logged)."""
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1)
    """Completion tokens per model call."""
    checkpoint_url: str = "sqlite:///.keel/checkpoints.sqlite"
    """Where runs are checkpointed: `sqlite:///path`, `postgresql://…` or `memory://`."""
    redis_url: str | None = None
    """Redis for shared caches, breakers and rate limits (optional)."""
    database_url: str | None = None
    """The SQL tool's database; unset means the bundled sample database."""
    home: Path = Path(".keel")
    """Keel's working folder (sample database, default checkpoints)."""
    durability: Literal["sync", "async", "exit"] = "sync"
    """When checkpoints are written; `sync` is the only mode safe against SIGKILL."""
    limits: LimitSettings = LimitSettings()
    retry: RetrySettings = RetrySettings()
    sql: SqlToolSettings = SqlToolSettings()
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    """Price overrides by model name, merged over the built-in table."""

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

    def price_table(self) -> dict[str, ModelPrice]:
        """The built-in prices with the configured overrides on top."""
        return {**DEFAULT_PRICING, **self.pricing}


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

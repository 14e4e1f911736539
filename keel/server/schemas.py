"""Request bodies of the LangGraph Agent Server protocol, as far as Keel serves it.

Unknown fields are ignored (the SDK sends more than Keel needs); fields that would change
what a run does and that Keel cannot honour are refused with a 422 naming the field, so
nothing is silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AssistantSearch",
    "CommandBody",
    "HistoryRequest",
    "RunCreate",
    "StateUpdate",
    "StatelessRunCreate",
    "StreamMode",
    "ThreadCount",
    "ThreadCreate",
    "ThreadSearch",
    "ThreadUpdate",
]

StreamMode = Literal[
    "values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks", "checkpoints"
]
"""Stream modes Keel serves (`messages` is sent in the `messages-tuple` shape)."""

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ThreadCreate(_Body):
    thread_id: str | None = Field(None, pattern=ID_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[Any] | None = None

    @field_validator("supersteps")
    @classmethod
    def _no_supersteps(cls, value: list[Any] | None) -> None:
        if value:
            raise ValueError("supersteps are not supported")
        return None


class ThreadUpdate(_Body):
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(_Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = Field(None, max_length=1000)
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)

    @field_validator("values")
    @classmethod
    def _no_values(cls, value: dict[str, Any] | None) -> None:
        if value:
            raise ValueError("searching threads by state values is not supported")
        return None


class StateUpdate(_Body):
    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = Field(None, max_length=64)
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class HistoryRequest(_Body):
    limit: int = Field(10, ge=1, le=1000)
    before: dict[str, Any] | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


class AssistantSearch(_Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class CommandBody(_Body):
    """`Command(resume=..., update=..., goto=...)` for the graph."""

    resume: Any = None
    update: dict[str, Any] | list[tuple[str, Any]] | None = None
    goto: str | list[str] | None = None


class RunCreate(_Body):
    assistant_id: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] | None = None
    command: CommandBody | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    stream_mode: StreamMode | list[StreamMode] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_completion: Literal["delete", "keep"] | None = None
    on_disconnect: Literal["cancel", "continue"] = "continue"
    after_seconds: float | None = Field(None, ge=0, le=86_400)
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    webhook: str | None = None
    """POSTed the run's final payload when it ends (see `webhooks.check_webhook`)."""

    @field_validator("metadata", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _input_or_command(self) -> RunCreate:
        if self.input is not None and self.command is not None:
            raise ValueError("give either 'input' or 'command', not both")
        return self

    @property
    def modes(self) -> list[str]:
        """The requested stream modes, deduplicated, in order."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return list(dict.fromkeys(modes))

    @property
    def checkpoint_ref(self) -> str | None:
        if self.checkpoint_id:
            return self.checkpoint_id
        if self.checkpoint and isinstance(self.checkpoint.get("checkpoint_id"), str):
            return str(self.checkpoint["checkpoint_id"])
        return None


class StatelessRunCreate(RunCreate):
    """An item of `POST /runs/batch`: a stateless run, so it names no thread."""

    thread_id: None = None


class ThreadCount(_Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None

    @field_validator("values")
    @classmethod
    def _no_values(cls, value: dict[str, Any] | None) -> None:
        if value:
            raise ValueError("counting threads by state values is not supported")
        return None

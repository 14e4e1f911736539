"""Request bodies of the LangGraph Agent Server protocol, as far as Keel serves it.

Unknown fields are ignored (the SDK sends more than Keel needs); fields that would change
what a run does and that Keel cannot honour are refused with a 422 naming the field, so
nothing is silently dropped.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AssistantCount",
    "AssistantCreate",
    "AssistantLatest",
    "AssistantPatch",
    "AssistantSearch",
    "AssistantVersions",
    "CheckpointRef",
    "CommandBody",
    "HistoryRequest",
    "RunCreate",
    "StateAt",
    "StateUpdate",
    "StatelessRunCreate",
    "StreamMode",
    "ThreadCount",
    "ThreadCreate",
    "ThreadPrune",
    "ThreadSearch",
    "ThreadUpdate",
]

StreamMode = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "debug",
    "tasks",
    "checkpoints",
    "events",
]
"""Stream modes Keel serves: `messages` as the protocol's `messages/partial`, `…/complete`
and `…/metadata` events, `messages-tuple` as `messages` events of `[message, metadata]`,
`events` as LangChain's v2 run events (`astream_events`)."""

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
METADATA_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
MAX_OFFSET = 1_000_000
"""The largest `offset` a listing accepts (past it a database's OFFSET overflows)."""
ThreadSortBy = Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"]
"""What `POST /threads/search` sorts by (`state_updated_at` is the thread's `updated_at`)."""


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
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: ThreadSortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None

    @field_validator("values")
    @classmethod
    def _no_values(cls, value: dict[str, Any] | None) -> None:
        if value:
            raise ValueError("searching threads by state values is not supported")
        return None


class CheckpointRef(_Body):
    """The protocol's `Checkpoint`: which checkpoint of the thread (the root's by default)."""

    thread_id: str | None = None
    checkpoint_ns: str = Field("", max_length=256)
    checkpoint_id: str | None = Field(None, pattern=ID_PATTERN)
    checkpoint_map: dict[str, Any] | None = None

    @field_validator("checkpoint_ns")
    @classmethod
    def _root_only(cls, value: str) -> str:
        if value:
            raise ValueError("Keel's graph has no subgraphs: checkpoint_ns must be empty")
        return value

    def configurable(self) -> dict[str, Any]:
        """The keys LangGraph reads from `config["configurable"]` (the thread's id aside)."""
        found: dict[str, Any] = {"checkpoint_ns": self.checkpoint_ns}
        if self.checkpoint_id:
            found["checkpoint_id"] = self.checkpoint_id
        if self.checkpoint_map:
            found["checkpoint_map"] = self.checkpoint_map
        return found


class StateAt(_Body):
    """`POST /threads/{id}/state/checkpoint`."""

    checkpoint: CheckpointRef
    subgraphs: bool = False


class StateUpdate(_Body):
    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = Field(None, max_length=64)
    checkpoint_id: str | None = Field(None, pattern=ID_PATTERN)
    checkpoint: CheckpointRef | None = None


class HistoryRequest(_Body):
    limit: int = Field(10, ge=1, le=1000)
    before: dict[str, Any] | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _plain_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """The SQLite saver puts each key in a JSON path: only plain names are filters."""
        for key in value or {}:
            if not METADATA_KEY.fullmatch(key):
                raise ValueError(
                    f"metadata filter key {key[:64]!r} is not a plain name "
                    "(letters, digits, '_' and '-', at most 64)"
                )
        return value


AssistantSortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
GRAPH_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"


class AssistantCreate(_Body):
    """`POST /assistants`."""

    graph_id: str = Field(min_length=1, max_length=128)
    assistant_id: str | None = Field(None, pattern=ID_PATTERN, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=10_000)

    @field_validator("config", "context", "metadata", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class AssistantPatch(_Body):
    """`PATCH /assistants/{id}`: what is given replaces the current version's (metadata is
    merged into it), as a new version."""

    graph_id: str | None = Field(None, min_length=1, max_length=128)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=10_000)


class AssistantSearch(_Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: AssistantSortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = Field(None, max_length=32)


class AssistantCount(_Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersions(_Body):
    """`POST /assistants/{id}/versions`."""

    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class AssistantLatest(_Body):
    """`POST /assistants/{id}/latest`."""

    version: int = Field(ge=1)


class CommandBody(_Body):
    """`Command(resume=..., update=..., goto=...)` for the graph."""

    resume: Any = None
    update: dict[str, Any] | list[tuple[str, Any]] | None = None
    goto: str | list[str] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> CommandBody:
        if self.resume is None and not self.update and not self.goto:
            raise ValueError("a command needs 'resume', 'update' or 'goto'")
        return self

    @property
    def targets(self) -> list[str]:
        """The nodes `goto` names."""
        return [self.goto] if isinstance(self.goto, str) else list(self.goto or ())


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

    @field_validator("stream_subgraphs")
    @classmethod
    def _no_subgraph_streams(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "stream_subgraphs is not supported: a subgraph's steps stream as its parent node's"
            )
        return value

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


class ThreadPrune(_Body):
    """`POST /threads/prune` (the SDK's `threads.prune`)."""

    thread_ids: list[str] = Field(min_length=1, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


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

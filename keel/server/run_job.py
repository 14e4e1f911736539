"""What a run carries from its admission to the process that executes it.

The API stores it with the run record (`RunRecord.kwargs`, the JSON the protocol shows as
a run's `kwargs`); an executor — in this process, or a `keel worker` that took the queue's
job — reads it back as a `RunJob`. The queue's job itself carries only the run id (task
`keel.execute_run`, kwargs `{"run_id": …}`, locked by the thread id), the same payload
earlier versions queued, so jobs already waiting keep running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keel.server.auth import Principal
from keel.server.schemas import RunCreate
from keel.server.store import RunRecord

__all__ = ["RunJob", "stored_kwargs"]

_OWN_KEYS = ("role", "delete_after", "stream", "assistant")
"""Keys of the stored kwargs that are not the request's body."""


def stored_kwargs(
    body: RunCreate,
    role: str,
    *,
    delete_after: bool = False,
    stream: bool = False,
    assistant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's `kwargs` as stored: the request body, the caller's role, two flags and
    `assistant`: the graph id and the config and context the run executes with (its
    assistant's, then its own), fixed at admission."""
    kwargs: dict[str, Any] = {**body.model_dump(mode="json", exclude_none=True), "role": role}
    if assistant is not None:
        kwargs["assistant"] = assistant
    if delete_after:
        kwargs["delete_after"] = True
    if stream:
        kwargs["stream"] = True
    return kwargs


@dataclass(frozen=True)
class RunJob:
    """One run to execute, typed: who asked, what for, and how it is to be told."""

    record: RunRecord
    body: RunCreate
    role: str = "admin"
    delete_after: bool = False
    """A background stateless run: its temporary thread goes when the run ends."""
    stream: bool = False
    """A client streams it: a worker publishes every event, not only the outcome."""

    @classmethod
    def of(cls, record: RunRecord) -> RunJob:
        """The job a stored run describes (as written by this or an earlier version)."""
        kwargs = record.kwargs
        body = RunCreate.model_validate({k: v for k, v in kwargs.items() if k not in _OWN_KEYS})
        return cls(
            record=record,
            body=body,
            role=str(kwargs.get("role", "admin")),
            delete_after=bool(kwargs.get("delete_after")),
            stream=bool(kwargs.get("stream")),
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def thread_id(self) -> str:
        return self.record.thread_id

    @property
    def principal(self) -> Principal:
        return Principal(self.record.tenant_id, self.role)

    @property
    def webhook(self) -> str | None:
        return self.body.webhook or None

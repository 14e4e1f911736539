"""Crons: `client.crons.*` — create (on a thread or stateless), search, count, update, delete.

A thread cron starts a run on its thread at each occurrence; a stateless cron creates a
new thread per run, deleted after the run unless `on_run_completed` is `keep`. Runs are
started by `crons.CronScheduler` through the run manager's normal admission.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from keel.server.assistants import Assistants
from keel.server.auth import Principal
from keel.server.crons import CronRecord, CronStore, StartRun, check_schedule, next_run
from keel.server.deps import Caller, Services, Svc, load_thread
from keel.server.errors import COMMON_ERRORS, NotFound, Unprocessable
from keel.server.handles import question_from
from keel.server.runs import RunManager
from keel.server.schemas import ID_PATTERN, MAX_OFFSET, RunCreate
from keel.server.store import Store
from keel.server.targets import claim_thread, resolve_target
from keel.server.webhooks import check_webhook

__all__ = ["cron_starter", "router"]

router = APIRouter(tags=["crons"], responses=COMMON_ERRORS)
ThreadId = Annotated[str, Path(pattern=ID_PATTERN)]
CronId = Annotated[str, Path(pattern=ID_PATTERN)]


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


EndTime = Annotated[datetime | None, AfterValidator(_utc)]

CRON_FIELDS = {"schedule", "end_time", "enabled", "timezone", "on_run_completed"}
"""Fields of a cron body that are about the schedule, not the run (kept out of `payload`)."""
SORT_COLUMNS = {"next_run_date": "next_run_at"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CronCreate(RunCreate):
    schedule: str = Field(min_length=1, max_length=128)
    end_time: EndTime = None
    enabled: bool = True
    timezone: str | None = Field(None, max_length=64)
    on_run_completed: Literal["delete", "keep"] | None = None


class CronUpdate(_Body):
    """`PATCH /runs/crons/{id}`: only the fields given change (`end_time: null` clears it)."""

    schedule: str | None = Field(None, min_length=1, max_length=128)
    end_time: EndTime = None
    enabled: bool | None = None
    timezone: str | None = Field(None, max_length=64)
    on_run_completed: Literal["delete", "keep"] | None = None
    input: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Any = None
    interrupt_after: Any = None
    stream_mode: Any = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Any = None


class CronSearch(_Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    sort_by: (
        Literal[
            "cron_id",
            "assistant_id",
            "thread_id",
            "created_at",
            "updated_at",
            "next_run_date",
            "end_time",
        ]
        | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = Field(None, max_length=32)


class CronCount(_Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


async def _assistant(svc: Services, principal: Principal, ref: str | None) -> str | None:
    """The id of the assistant `ref` names (an id, or a graph id); 404 for none."""
    if ref is None:
        return None
    return (await svc.assistants.get(ref, principal.tenant_id)).assistant_id


async def _check_run(
    body: RunCreate, svc: Services, principal: Principal, *, on_thread: bool
) -> None:
    """Refuse now (422) a run payload every occurrence would fail on."""
    _, served, _, _ = await resolve_target(svc.assistants, svc.graphs, principal, body)
    if body.input is not None:
        if served.kind == "keel":
            question_from(body.input)
    elif body.command is None or not on_thread:
        raise Unprocessable("a cron needs 'input' (a thread cron may give 'command' instead)")
    check_webhook(body.webhook, svc.runs.webhooks.policy)


async def _create(
    svc: Svc, principal: Principal, body: CronCreate, thread_id: str | None
) -> dict[str, Any]:
    assistant_id = await _assistant(svc, principal, body.assistant_id)
    assert assistant_id is not None
    check_schedule(body.schedule, body.timezone)
    await _check_run(body, svc, principal, on_thread=thread_id is not None)
    at = datetime.now(UTC)
    if body.end_time is not None and body.end_time <= at:
        raise Unprocessable(f"end_time {body.end_time.isoformat()} is in the past")
    if thread_id is not None:
        await load_thread(svc, thread_id, principal)
    following = next_run(body.schedule, at, body.timezone)
    if body.end_time is not None and following > body.end_time:
        raise Unprocessable("the schedule has no occurrence before end_time")
    record = CronRecord(
        cron_id=str(uuid.uuid4()),
        tenant_id=principal.tenant_id,
        role=principal.role,
        thread_id=thread_id,
        assistant_id=assistant_id,
        schedule=body.schedule,
        timezone=body.timezone,
        payload=body.model_dump(mode="json", exclude_unset=True, exclude=CRON_FIELDS),
        metadata=body.metadata,
        enabled=body.enabled,
        on_run_completed=None if thread_id else (body.on_run_completed or "delete"),
        next_run_at=following if body.enabled else None,
        end_time=body.end_time,
        created_at=at,
        updated_at=at,
    )
    await CronStore(svc.store.engine).create(record)
    return record.json()


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(
    thread_id: ThreadId, body: CronCreate, svc: Svc, principal: Caller
) -> dict[str, Any]:
    return await _create(svc, principal, body, thread_id)


@router.post("/runs/crons")
async def create_cron(body: CronCreate, svc: Svc, principal: Caller) -> dict[str, Any]:
    return await _create(svc, principal, body, None)


@router.patch("/runs/crons/{cron_id}")
async def update_cron(
    cron_id: CronId, body: CronUpdate, svc: Svc, principal: Caller
) -> dict[str, Any]:
    table = CronStore(svc.store.engine)
    cron = await table.get(cron_id, principal.tenant_id)
    if cron is None:
        raise NotFound(f"cron {cron_id} not found")
    given = body.model_dump(mode="json", exclude_unset=True)
    changes = {k: v for k, v in given.items() if k not in CRON_FIELDS and v is not None}
    payload = {**cron.payload, **changes}
    try:
        run = RunCreate.model_validate({**payload, "assistant_id": cron.assistant_id})
    except ValidationError as exc:
        raise Unprocessable(f"the cron's run would be invalid: {exc.errors()[0]['msg']}") from exc
    await _check_run(run, svc, principal, on_thread=cron.thread_id is not None)
    schedule = body.schedule or cron.schedule
    timezone = body.timezone if "timezone" in given else cron.timezone
    check_schedule(schedule, timezone)
    at = datetime.now(UTC)
    end_time = body.end_time if "end_time" in given else cron.end_time
    if "end_time" in given and end_time is not None and end_time <= at:
        raise Unprocessable(f"end_time {end_time.isoformat()} is in the past")
    enabled = cron.enabled if body.enabled is None else body.enabled
    following: datetime | None = next_run(schedule, at, timezone) if enabled else None
    if end_time is not None and following is not None and following > end_time:
        following = None
    stateless = cron.thread_id is None
    await table.update(
        cron_id,
        principal.tenant_id,
        {
            "schedule": schedule,
            "timezone": timezone,
            "payload": payload,
            "metadata": run.metadata if "metadata" in changes else cron.metadata,
            "enabled": enabled,
            "on_run_completed": (body.on_run_completed or cron.on_run_completed)
            if stateless
            else None,
            "next_run_at": following,
            "end_time": end_time,
            "updated_at": at,
        },
    )
    updated = await table.get(cron_id, principal.tenant_id)
    if updated is None:  # deleted meanwhile
        raise NotFound(f"cron {cron_id} not found")
    return updated.json()


@router.post("/runs/crons/search")
async def search_crons(body: CronSearch, svc: Svc, principal: Caller) -> list[dict[str, Any]]:
    sort_by = body.sort_by or "created_at"
    found = await CronStore(svc.store.engine).search(
        principal.tenant_id,
        assistant_id=await _assistant(svc, principal, body.assistant_id),
        thread_id=body.thread_id,
        enabled=body.enabled,
        metadata=body.metadata,
        sort_by=SORT_COLUMNS.get(sort_by, sort_by),
        descending=(body.sort_order or "desc") == "desc",
    )
    page = [c.json() for c in found[body.offset : body.offset + body.limit]]
    if body.select:
        page = [{k: v for k, v in c.items() if k in body.select} for c in page]
    return page


@router.post("/runs/crons/count")
async def count_crons(body: CronCount, svc: Svc, principal: Caller) -> int:
    found = await CronStore(svc.store.engine).search(
        principal.tenant_id,
        assistant_id=await _assistant(svc, principal, body.assistant_id),
        thread_id=body.thread_id,
        metadata=body.metadata,
    )
    return len(found)


@router.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(cron_id: CronId, svc: Svc, principal: Caller) -> Response:
    if not await CronStore(svc.store.engine).delete(cron_id, principal.tenant_id):
        raise NotFound(f"cron {cron_id} not found")
    return Response(status_code=204)


def cron_starter(store: Store, manager: RunManager, assistants: Assistants) -> StartRun:
    """How the scheduler starts a cron's run: as `POST /threads/{id}/runs` or `/runs` would."""

    async def start(cron: CronRecord) -> None:
        principal = Principal(cron.tenant_id, cron.role)
        body = RunCreate.model_validate({**cron.payload, "assistant_id": cron.assistant_id})
        target = await resolve_target(assistants, manager.graphs, principal, body)
        if cron.thread_id is not None:
            thread = await store.get_thread(cron.thread_id, cron.tenant_id)
            if thread is None:  # its thread was deleted: so is the cron
                await CronStore(store.engine).delete(cron.cron_id, cron.tenant_id)
                raise NotFound(f"thread {cron.thread_id} is gone; cron deleted")
            await claim_thread(store, manager.graphs, thread, target)
            await manager.start(thread, principal, body, background=True, target=target)
            return
        thread_id = str(uuid.uuid4())
        created = await store.create_thread(
            thread_id,
            cron.tenant_id,
            {"graph_id": target[3], "assistant_id": target[0], "cron_id": cron.cron_id},
        )
        assert created is not None
        try:
            await manager.start(
                created,
                principal,
                body,
                temporary=(cron.on_run_completed or "delete") == "delete",
                background=True,
                fresh=True,
                target=target,
            )
        except Exception:
            await store.delete_thread(created.key, cron.tenant_id)
            raise

    return start

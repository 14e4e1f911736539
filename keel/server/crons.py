"""Crons: runs started on a schedule, on one thread or each on a new thread.

```python
scheduler = CronScheduler(CronStore(store.engine), start=start_cron_run, tick_s=10)
await scheduler.tick(now)       # start every due cron's run once; what tests call
```
A tick claims due crons and moves their `next_run_at` on in one transaction (on Postgres
with `FOR UPDATE SKIP LOCKED`, and everywhere as a compare-and-set on the old value), so
several API processes start each occurrence once. The next occurrence is computed from
*now*: after downtime a cron runs once, not once per missed slot. A run the service
refuses (429 queue full, 409 thread busy, 503) skips that occurrence: it is logged and
counted (`CronScheduler.skipped`), not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import structlog
from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from keel.server.errors import ApiError, Unprocessable
from keel.server.store import metadata_matches
from keel.server.tables import crons

__all__ = [
    "CronRecord",
    "CronScheduler",
    "CronStore",
    "check_schedule",
    "next_run",
]

log = structlog.get_logger("keel.server.crons")
CLAIM_BATCH = 100
"""Due crons one tick claims at most (the rest wait for the next tick)."""


def _zone(timezone: str | None) -> ZoneInfo | None:
    if not timezone:
        return None
    if timezone not in _zones():
        raise Unprocessable(f"timezone {timezone!r} is not an IANA time zone")
    return ZoneInfo(timezone)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_schedule(schedule: str, timezone: str | None = None) -> None:
    """422 unless `schedule` is a 5-field cron expression (and `timezone` a known zone)."""
    fields = schedule.split()
    if len(fields) != 5 or not croniter.is_valid(schedule):
        raise Unprocessable(
            f"schedule {schedule!r} is not a 5-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *')"
        )
    try:
        next_run(schedule, datetime.now(UTC), timezone)
    except (ValueError, TypeError) as exc:  # croniter's errors derive from these
        raise Unprocessable(f"schedule {schedule!r} has no next occurrence") from exc


def next_run(schedule: str, after: datetime, timezone: str | None = None) -> datetime:
    """The first occurrence strictly after `after`, in UTC (the schedule read in `timezone`)."""
    zone = _zone(timezone)
    start = after.astimezone(zone) if zone else after.astimezone(UTC)
    found: datetime = croniter(schedule, start).get_next(datetime)
    return found.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CronRecord:
    cron_id: str
    tenant_id: str
    role: str
    thread_id: str | None
    assistant_id: str
    schedule: str
    timezone: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    enabled: bool
    on_run_completed: str | None
    next_run_at: datetime | None
    end_time: datetime | None
    created_at: datetime
    updated_at: datetime

    def json(self) -> dict[str, Any]:
        """The protocol's `Cron` object."""
        return {
            "cron_id": self.cron_id,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "on_run_completed": self.on_run_completed,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "payload": self.payload,
            "user_id": None,
            "next_run_date": self.next_run_at.isoformat() if self.next_run_at else None,
            "metadata": self.metadata,
            "enabled": self.enabled,
        }


def _cron(row: Any) -> CronRecord:
    m = dict(row._mapping)
    for key in ("next_run_at", "end_time", "created_at", "updated_at"):
        m[key] = _aware(m[key])
    m["payload"] = dict(m["payload"] or {})
    m["metadata"] = dict(m["metadata"] or {})
    return CronRecord(**m)


class CronStore:
    """The `keel_crons` table; every query but the scheduler's names its tenant."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, record: CronRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(crons.insert().values(**record.__dict__))

    async def get(self, cron_id: str, tenant_id: str) -> CronRecord | None:
        query = select(crons).where(crons.c.cron_id == cron_id, crons.c.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _cron(row) if row else None

    async def update(self, cron_id: str, tenant_id: str, values: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(crons)
                .where(crons.c.cron_id == cron_id, crons.c.tenant_id == tenant_id)
                .values(**values)
            )

    async def delete(self, cron_id: str, tenant_id: str) -> bool:
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(crons).where(crons.c.cron_id == cron_id, crons.c.tenant_id == tenant_id)
            )
        return bool(gone.rowcount)

    async def delete_for_thread(self, thread_id: str, tenant_id: str) -> int:
        """Delete the crons of a thread (the thread is being deleted); how many went."""
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(crons).where(crons.c.thread_id == thread_id, crons.c.tenant_id == tenant_id)
            )
        return int(gone.rowcount or 0)

    async def search(
        self,
        tenant_id: str,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: dict[str, Any] | None = None,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[CronRecord]:
        """The tenant's crons matching every filter (metadata: exact match per key)."""
        query = select(crons).where(crons.c.tenant_id == tenant_id)
        if assistant_id is not None:
            query = query.where(crons.c.assistant_id == assistant_id)
        if thread_id is not None:
            query = query.where(crons.c.thread_id == thread_id)
        if enabled is not None:
            query = query.where(crons.c.enabled == enabled)
        column = crons.c[sort_by]
        query = query.order_by(column.desc() if descending else column.asc(), crons.c.cron_id)
        async with self.engine.connect() as conn:
            found = [_cron(r) for r in (await conn.execute(query)).all()]
        if metadata:
            found = [c for c in found if metadata_matches(c.metadata, metadata)]
        return found

    async def claim_due(self, now: datetime, limit: int = CLAIM_BATCH) -> list[CronRecord]:
        """Due, enabled crons, each with `next_run_at` moved past `now` in the same transaction.

        Only the caller that moved a cron's `next_run_at` gets it, however many processes
        tick at once. A cron past its `end_time` is claimed too, with no next run (done).
        """
        due = and_(
            crons.c.enabled.is_(True),
            crons.c.next_run_at.is_not(None),
            crons.c.next_run_at <= now,
        )
        query = select(crons).where(due).order_by(crons.c.next_run_at).limit(limit)
        now = now.astimezone(UTC)
        claimed: list[CronRecord] = []
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for row in (await conn.execute(query)).all():
                cron = _cron(row)
                following: datetime | None = next_run(cron.schedule, now, cron.timezone)
                if cron.end_time is not None and following is not None:
                    following = following if following <= cron.end_time else None
                moved = await conn.execute(
                    update(crons)
                    .where(
                        crons.c.cron_id == cron.cron_id,
                        crons.c.next_run_at == row._mapping["next_run_at"],
                    )
                    .values(next_run_at=following, updated_at=now)
                )
                if moved.rowcount == 1:
                    claimed.append(cron)
        return claimed


StartRun = Callable[[CronRecord], Awaitable[None]]
"""Starts one occurrence's run through the run manager's normal admission."""


class CronScheduler:
    """Ticks every `tick_s`: claims due crons and starts their runs."""

    def __init__(self, store: CronStore, start: StartRun, *, tick_s: float) -> None:
        self.store = store
        self.start = start
        self.tick_s = tick_s
        self.started = 0
        """Occurrences whose run was started by this process."""
        self.skipped = 0
        """Occurrences skipped because the run was refused (queue full, thread busy …)."""
        self._task: asyncio.Task[None] | None = None

    async def tick(self, now: datetime | None = None) -> int:
        """Start the run of every cron due at `now`; the number started."""
        at = (now or datetime.now(UTC)).astimezone(UTC)
        started = 0
        for cron in await self.store.claim_due(at):
            if cron.end_time is not None and cron.end_time < at:
                continue  # ended while the service was down: nothing more to run
            bound = log.bind(cron_id=cron.cron_id, tenant=cron.tenant_id)
            try:
                await self.start(cron)
            except ApiError as exc:
                self.skipped += 1
                bound.warning("cron.skipped", status=exc.status, reason=exc.message)
                continue
            except Exception:
                self.skipped += 1
                bound.exception("cron.failed")
                continue
            started += 1
        self.started += started
        return started

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("cron.tick_failed")
            await asyncio.sleep(self.tick_s)

    def run(self) -> None:
        """Tick in the background until `stop()`."""
        self._task = asyncio.create_task(self._loop(), name="keel-cron-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

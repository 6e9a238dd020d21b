"""Scheduled work: one APScheduler 3.x ``AsyncIOScheduler`` in the bot's event loop, its jobs
kept in the bot's own database (``SQLAlchemyJobStore``), so they survive restarts.

Every job coalesces (runs that were missed while the bot was down become one run), runs one
instance at a time, and is still run when the bot comes back within the misfire grace time.
A stored job names its task (``backup``, ``report``, ``alerts`` …), not a function: the tasks
are registered by the running app, so a stored job never pickles live objects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from bot.config import parse_when
from values import value

log = logging.getLogger(__name__)
Task = Callable[[], Awaitable[None]]
_TASKS: dict[str, Task] = {}
TABLE = "scheduled_jobs"


async def run_task(name: str) -> None:
    """What every stored job calls: the task registered under ``name``."""
    task = _TASKS.get(name)
    if task is None:
        log.warning("scheduled task %s is not known to this version; skipped", name)
        return
    try:
        await task()
    except Exception:
        log.exception("scheduled task %s failed", name)


@value
class Planned:
    name: str
    when: str
    next_run: datetime | None


class Scheduler:
    def __init__(self, engine: Engine, timezone: tzinfo, grace_seconds: int = 6 * 3600) -> None:
        self.timezone = timezone
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=TABLE)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": grace_seconds,
            },
            timezone=timezone,
        )

    def register(self, name: str, task: Task) -> None:
        _TASKS[name] = task

    def start(self) -> None:
        """Start in the running event loop; missed runs within the grace time run now."""
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def plan(self, name: str, when: str) -> None:
        """Run task ``name`` ``when`` ("daily 03:30", "weekly 08:00", "monthly 04:00"), in
        the bot's time zone; replaces the task's earlier plan."""
        every, hour, minute = parse_when(when)
        when = f"{every} {hour:02d}:{minute:02d}"
        existing = self._scheduler.get_job(name)
        if existing is not None and existing.name == when:
            return  # kept as stored: a run missed while the bot was down still comes
        extra: dict[str, str | int] = {}
        if every == "weekly":
            extra["day_of_week"] = "mon"
        elif every == "monthly":
            extra["day"] = 1
        trigger = CronTrigger(hour=hour, minute=minute, timezone=self.timezone, **extra)
        self._add(name, trigger, when)

    def every(self, name: str, seconds: int) -> None:
        self._add(name, IntervalTrigger(seconds=seconds, timezone=self.timezone), f"{seconds}s")

    def once(self, name: str, at: datetime) -> None:
        self._add(name, DateTrigger(run_date=at, timezone=self.timezone), f"once {at:%H:%M:%S}")

    def _add(
        self, name: str, trigger: CronTrigger | IntervalTrigger | DateTrigger, when: str
    ) -> None:
        self._scheduler.add_job(
            run_task, trigger, args=[name], id=name, name=when, replace_existing=True
        )

    def tasks(self) -> set[str]:
        return set(_TASKS)

    def cancel(self, name: str) -> bool:
        try:
            self._scheduler.remove_job(name)
        except JobLookupError:
            return False
        return True

    def planned(self) -> list[Planned]:
        return sorted(
            (Planned(job.id, job.name, job.next_run_time) for job in self._scheduler.get_jobs()),
            key=lambda p: p.name,
        )

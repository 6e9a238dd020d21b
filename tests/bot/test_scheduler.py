"""The scheduler on a real database: jobs survive a stop, a missed run runs once on start
(misfire grace, coalescing), and a run missed by more than the grace time is skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import parse_when
from bot.scheduler import Scheduler
from bot.storage.database import Database


class Counter:
    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1


async def test_a_job_due_while_the_bot_was_down_runs_once_when_it_starts(
    sqlite_db: Database,
) -> None:
    first, probe = Scheduler(sqlite_db.engine, UTC), Counter()
    first.register("probe", probe)
    first.start()
    first.once("probe", datetime.now(UTC) + timedelta(seconds=0.6))
    first.shutdown()  # the bot stops before the job is due
    await asyncio.sleep(1.0)
    assert probe.runs == 0

    second = Scheduler(sqlite_db.engine, UTC)
    second.register("probe", probe)
    second.start()
    await asyncio.sleep(0.5)
    assert probe.runs == 1
    await asyncio.sleep(0.8)
    assert probe.runs == 1  # once, not again
    second.shutdown()


async def test_missed_runs_of_a_repeating_job_coalesce_into_one(sqlite_db: Database) -> None:
    first, probe = Scheduler(sqlite_db.engine, UTC), Counter()
    first.register("tick", probe)
    first.start()
    first.every("tick", 1)
    first.shutdown()
    await asyncio.sleep(3.3)  # three runs missed
    second = Scheduler(sqlite_db.engine, UTC)
    second.register("tick", probe)
    second.start()
    await asyncio.sleep(0.4)
    assert probe.runs == 1
    second.shutdown()


async def test_a_run_missed_by_more_than_the_grace_time_is_skipped(sqlite_db: Database) -> None:
    first, probe = Scheduler(sqlite_db.engine, UTC, grace_seconds=1), Counter()
    first.register("late", probe)
    first.start()
    first.once("late", datetime.now(UTC) + timedelta(seconds=0.2))
    first.shutdown()
    await asyncio.sleep(1.6)
    second = Scheduler(sqlite_db.engine, UTC, grace_seconds=1)
    second.register("late", probe)
    second.start()
    await asyncio.sleep(0.4)
    assert probe.runs == 0
    second.shutdown()


async def test_plans_are_in_the_bots_time_zone_and_replace_each_other(sqlite_db: Database) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    scheduler = Scheduler(sqlite_db.engine, berlin)
    scheduler.register("backup", Counter())
    scheduler.start()
    scheduler.plan("backup", "daily 03:30")
    scheduler.plan("backup", "daily 4:05")
    (planned,) = scheduler.planned()
    assert planned.when == "daily 04:05"
    assert planned.next_run is not None
    local = planned.next_run.astimezone(berlin)
    assert (local.hour, local.minute) == (4, 5)
    assert scheduler.cancel("backup")
    assert not scheduler.cancel("backup")
    scheduler.shutdown()


@pytest.mark.parametrize("text", ["daily", "hourly 03:00", "daily 24:00", "daily 3:5", "x 1:00"])
def test_a_bad_time_names_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match="daily\\|weekly\\|monthly HH:MM"):
        parse_when(text)

"""The routine of a serving bot, on the scheduler: the daily report, the alert check every few
minutes, the heartbeat, and
the public-address check. It is also the ``Schedules`` that /schedule reads and changes: a
time set from chat is kept in the database and wins over the configured one."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.scheduler import Scheduler
from handlers.alerts import check_alerts
from handlers.backups import monthly_drill, scheduled_backup, weekly_check
from handlers.core.context import Context
from handlers.core.messages import Actor, ChatRef, Command, Reply
from handlers.core.progress import NoProgress
from handlers.core.spec import Role
from handlers.public_address import follow_public_ip
from handlers.reports import build_report, subscribers, weekly_report
from providers.backup.base import RetentionPolicy

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)
CHOSEN = "schedule:"


class Routine:
    def __init__(self, app: App) -> None:
        self._app = app
        self._scheduler = Scheduler(app.db.engine, app.engine.deps.timezone)

    # -- Schedules, for /schedule --

    def tasks(self) -> set[str]:
        return self._scheduler.tasks()

    def planned(self) -> list[tuple[str, str, datetime | None]]:
        return [(p.name, p.when, p.next_run) for p in self._scheduler.planned()]

    async def plan(self, name: str, when: str) -> None:
        self._scheduler.plan(name, when)
        await self._app.kv.set(CHOSEN + name, when, self._app.engine.clock())

    # -- running --

    async def start(self) -> None:
        settings = self._app.settings
        self._scheduler.register("report", self._report)
        self._scheduler.register("weekly", self._weekly)
        self._scheduler.register("alerts", self._alerts)
        if settings.heartbeat_url:
            self._scheduler.register("heartbeat", self._heartbeat)
        backups = self._app.engine.deps.backups is not None
        if backups:
            self._scheduler.register("backup", self._backup)
            self._scheduler.register("check", self._check)
            self._scheduler.register("drill", self._drill)
        self._scheduler.start()
        chosen = await self._app.kv.get(CHOSEN + "report")
        self._scheduler.plan("report", chosen or settings.report_schedule)
        self._scheduler.plan("weekly", "weekly 08:05")  # Mondays; after the daily report
        if backups:
            chosen = await self._app.kv.get(CHOSEN + "backup")
            self._scheduler.plan("backup", chosen or settings.backup_schedule)
            self._scheduler.plan("check", "weekly 05:00")
            self._scheduler.plan("drill", "monthly 05:30")
        else:
            for name in ("backup", "check", "drill"):
                self._scheduler.cancel(name)
        self._scheduler.every("alerts", settings.alert_interval_seconds)
        if settings.heartbeat_url:
            self._scheduler.every("heartbeat", 60)
        else:
            self._scheduler.cancel("heartbeat")
        if self._app.engine.deps.public_ip is not None:
            self._scheduler.register("public-ip", self._public_ip)
            self._scheduler.every("public-ip", settings.public_ip_interval_seconds)
        else:
            self._scheduler.cancel("public-ip")
        engine = self._app.engine
        engine.deps = replace(engine.deps, schedules=self)

    def stop(self) -> None:
        self._scheduler.shutdown()

    async def _report(self) -> None:
        deps, now = self._app.engine.deps, self._app.engine.clock()
        await self._broadcast(await build_report(deps, now))
        if deps.samples is not None:
            # Once a day, off the alert check's path: samples older than a year go.
            await deps.samples.purge(now - timedelta(days=366))

    async def _weekly(self) -> None:
        deps, now = self._app.engine.deps, self._app.engine.clock()
        await self._broadcast(await weekly_report(deps, now))

    async def _alerts(self) -> None:
        for reply in await check_alerts(self._app.engine.deps, self._app.engine.clock()):
            await self._broadcast(reply)

    async def _public_ip(self) -> None:
        """To the admins: only they may confirm /dns fix."""
        deps, now = self._app.engine.deps, self._app.engine.clock()
        for reply in await follow_public_ip(deps, now):
            await self._app.notifier.notify(reply)

    async def _backup(self) -> None:
        settings, deps, now = self._app.settings, self._app.engine.deps, self._app.engine.clock()
        policy = RetentionPolicy(
            keep_last=settings.keep_last, keep_daily=settings.keep_daily,
            keep_weekly=settings.keep_weekly, keep_monthly=settings.keep_monthly,
            keep_yearly=settings.keep_yearly,
        )  # fmt: skip
        scheduler = Actor("system", "scheduler", "the schedule")
        command = Command("backup", (), scheduler, ChatRef("system", "scheduler"), now)
        ctx = Context(command, Role.ADMIN, deps, NoProgress(), now)
        await self._broadcast(await scheduled_backup(deps, ctx, policy))

    async def _check(self) -> None:
        deps = self._app.engine.deps
        await self._broadcast(await weekly_check(deps, self._app.engine.clock()))

    async def _drill(self) -> None:
        deps = self._app.engine.deps
        with tempfile.TemporaryDirectory(prefix="steward-drill-") as folder:
            reply = await monthly_drill(deps, self._app.engine.clock(), Path(folder))
        await self._broadcast(reply)

    async def _broadcast(self, reply: Reply) -> None:
        """To the subscribed chats; until there are any, to the admins."""
        chats = await subscribers(self._app.engine.deps) or list(self._app.notifier.chats)
        await self._app.notifier.send_to(chats, reply)

    async def _heartbeat(self) -> None:
        import httpx  # noqa: PLC0415 - python-telegram-bot's HTTP client, already loaded

        url = self._app.settings.heartbeat_url
        assert url is not None  # noqa: S101 - registered only with a URL
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed: %s", type(exc).__name__)

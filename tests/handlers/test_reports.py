"""Reports, alerts, subscriptions and schedules: through the engine on the demo server, and the
routine of a serving bot on its real scheduler and database."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from bot.app import App, build_app
from bot.config import load_settings
from bot.routine import Routine
from handlers.alerts import alert_id, check_alerts
from handlers.backups import weekly_check
from handlers.core.messages import ChatRef, Command
from handlers.reports import subscribers
from providers.host.base import DiskUsage, UnitStatus
from tests.conftest import ADMIN, CHAT, OPERATOR, VIEWER, Harness
from tests.support.chat import RecordingOutbox

if TYPE_CHECKING:
    from handlers.core.records import Notes


def fill(harness: Harness, mount: str, percent: float) -> None:
    host = harness.server.host
    disks = tuple(
        DiskUsage(d.mount, d.total_bytes, int(d.total_bytes * percent / 100))
        if d.mount == mount else d
        for d in host.metrics_value.disks
    )  # fmt: skip
    host.metrics_value = replace(host.metrics_value, disks=disks)


def heal_units(harness: Harness) -> None:
    units = harness.server.services.units
    units["jicofo.service"] = UnitStatus("jicofo.service", "loaded", "active", "running")


async def test_the_report_covers_the_host_and_is_loud_when_something_is_wrong(
    harness: Harness,
) -> None:
    await harness.say("/report", VIEWER)
    reply = harness.outbox.last.reply
    assert "<b>Daily report</b> for demo" in reply.text
    assert "generation 44" in reply.text
    assert "<code>/data</code> 71% of 100 GiB" in reply.text
    assert "❌ failed units: jicofo.service" in reply.text
    assert "server running" in reply.text
    assert "🪣 bucket" in reply.text
    assert not reply.silent


async def test_an_all_green_report_is_silent(harness: Harness) -> None:
    heal_units(harness)
    await harness.say("/report")
    assert not harness.outbox.last.reply.silent  # nothing is backed up yet
    await harness.say("/backup all")
    assert await harness.engine.wait_for_jobs(10)
    await harness.say("/report")
    assert harness.outbox.last.reply.silent
    assert "✅ no failed units" in harness.outbox.last.reply.text


async def test_subscribe_and_unsubscribe_choose_the_chats(harness: Harness) -> None:
    deps = harness.engine.deps
    assert await subscribers(deps) == []
    assert "now gets the daily report" in await harness.say("/subscribe")
    assert "already gets" in await harness.say("/subscribe")
    assert await subscribers(deps) == [CHAT]
    assert "needs the admin role" in await harness.say("/subscribe", VIEWER)
    assert "they go to the admins' chats" in await harness.say("/unsubscribe")
    assert await subscribers(deps) == []
    assert "does not get" in await harness.say("/unsubscribe")


async def test_alerts_are_sent_on_transitions_only(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    heal_units(harness)
    assert await check_alerts(deps, clock()) == []
    fill(harness, "/data", 91)
    (warning,) = await check_alerts(deps, clock())
    assert "⚠️ <b>Warning</b>: disk /data is 91% full" in warning.text
    assert not warning.silent
    clock.advance(minutes=5)
    assert await check_alerts(deps, clock()) == []  # still 91%: nothing new
    fill(harness, "/data", 96)
    (critical,) = await check_alerts(deps, clock())
    assert "🚨 <b>Critical</b>" in critical.text
    assert "disk /data is 96% full" in await harness.say("/alerts")
    clock.advance(minutes=20)
    fill(harness, "/data", 50)
    (recovered,) = await check_alerts(deps, clock())
    assert recovered.text == "✅ Recovered: disk /data is 50% full (it lasted 25 min)."
    assert recovered.silent
    assert await harness.say("/alerts") == "✅ No open alerts."


async def test_a_failed_unit_opens_an_alert_and_its_repair_closes_it(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    (opened,) = await check_alerts(deps, clock())
    assert "failed units: jicofo.service" in opened.text
    heal_units(harness)
    clock.advance(minutes=5)
    (closed,) = await check_alerts(deps, clock())
    assert closed.text.startswith("✅ Recovered: no failed units")


async def test_schedule_without_the_scheduler_says_where_it_runs(harness: Harness) -> None:
    assert "steward run" in await harness.say("/schedule")
    assert "steward run" in await harness.say("/schedule report daily 07:00")


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("STEWARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STEWARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STEWARD_ADMINS", ADMIN.user_id)
    monkeypatch.setenv("STEWARD_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("STEWARD_DEMO_DELAY", "0")
    return tmp_path


async def test_the_routine_plans_the_report_and_a_time_set_from_chat_survives_a_restart(
    app_env: Path,
) -> None:
    outbox = RecordingOutbox()
    app = build_app(load_settings(), demo=True)
    app.router.add("telegram", outbox)
    routine = Routine(app)
    await routine.start()
    try:
        planned = {name: when for name, when, _ in routine.planned()}
        assert planned == {
            "report": "daily 08:00", "weekly": "weekly 08:05", "alerts": "300s",
            "backup": "daily 03:30",
            "check": "weekly 05:00", "drill": "monthly 05:30",
        }  # fmt: skip
        engine = app.engine
        await engine.handle_command(
            Command("schedule", ("report", "daily", "7:15"), ADMIN, CHAT, engine.clock())
        )
        assert "Report: daily at 7:15 (Europe/Berlin)" in outbox.last.current.text
        await engine.handle_command(Command("schedule", (), ADMIN, CHAT, engine.clock()))
        shown = outbox.last.current.text
        assert "report: daily 07:15, next" in shown
        await engine.handle_command(
            Command("schedule", ("backup", "weekly", "02:00"), ADMIN, CHAT, engine.clock())
        )
        assert "Backup: weekly at 02:00" in outbox.last.current.text
        # The alert check goes to the admins' chats while nobody has subscribed.
        fill_app(app, 93)
        before = len(outbox.messages)
        await routine._alerts()
        alerts = outbox.messages[before:]
        assert {sent.chat for sent in alerts} == {ChatRef("telegram", ADMIN.user_id)}
        assert any("disk /data is 93% full" in sent.reply.text for sent in alerts)
        before = len(outbox.messages)
        await routine._weekly()
        (weekly,) = outbox.messages[before:]
        # Reports say which server sends them: several may share a chat.
        name = app.engine.deps.fleet.name if app.engine.deps.fleet else ""
        assert weekly.reply.text.startswith(f"🖥 <b>{name}</b> · 📈 <b>Week of")
        assert weekly.reply.silent
    finally:
        routine.stop()
        app.close()

    again = build_app(load_settings(), demo=True)
    later = Routine(again)
    await later.start()
    try:
        planned = {name: when for name, when, _ in later.planned()}
        assert planned["report"] == "daily 07:15"
        assert planned["backup"] == "weekly 02:00"
    finally:
        later.stop()
        again.close()


def fill_app(app: App, percent: float) -> None:
    assert app.demo is not None
    host = app.demo.host
    disks = tuple(
        DiskUsage(d.mount, d.total_bytes, int(d.total_bytes * percent / 100))
        if d.mount == "/data" else d
        for d in host.metrics_value.disks
    )  # fmt: skip
    host.metrics_value = replace(host.metrics_value, disks=disks)


async def test_the_demo_disk_command_fills_a_disk_and_shows_the_alert(harness: Harness) -> None:
    heal_units(harness)
    text = await harness.say("/demo disk 92")
    assert "<code>/</code> is now 92% full" in text
    assert "⚠️ <b>Warning</b>: disk / is 92% full." in text
    assert "nothing new" in await harness.say("/demo disk 93")
    assert "disk / is 93% full" in await harness.say("/alerts")
    harness.engine.deps = replace(harness.engine.deps, demo=None)
    assert "demo server only" in await harness.say("/demo disk 50")


async def test_certificates_warn_at_14_days_and_are_critical_at_7(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    heal_units(harness)
    certs = harness.server.host.certs
    certs.clear()
    certs["example.org"] = clock() + timedelta(days=30)
    assert await check_alerts(deps, clock()) == []
    assert "✅ certificate example.org: 30 days left" in await harness.say("/report")
    clock.advance(days=17)
    (warning,) = await check_alerts(deps, clock())
    assert "the certificate of example.org expires in 13 days" in warning.text
    clock.advance(days=7)
    (critical,) = await check_alerts(deps, clock())
    assert "🚨 <b>Critical</b>" in critical.text
    certs["example.org"] = clock() + timedelta(days=90)  # renewed
    (recovered,) = await check_alerts(deps, clock())
    assert recovered.text.startswith("✅ Recovered: the certificate of example.org expires in 90")


async def test_old_and_failed_backups_raise_alerts(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    heal_units(harness)
    harness.server.host.certs.clear()
    await harness.say("/backup nextcloud")
    assert await harness.engine.wait_for_jobs(10)
    assert await check_alerts(deps, clock()) == []
    clock.advance(hours=49)  # two daily periods and then some
    (stale,) = await check_alerts(deps, clock())
    assert "the last backup of Nextcloud is 49 h old" in stale.text
    harness.server.backups.damaged = True
    await weekly_check(deps, clock())
    (damaged,) = await check_alerts(deps, clock())
    assert "🚨 <b>Critical</b>: the last backup check failed" in damaged.text


class BrokenNotes:
    """The bot's database refuses writes (disk full, read-only): reads still work."""

    def __init__(self, inner: Notes) -> None:
        self.inner = inner

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)

    async def set(self, key: str, value: str, now: datetime) -> None:
        raise OSError("database or disk is full")

    async def delete(self, key: str) -> None:
        raise OSError("database or disk is full")


async def test_an_unwritable_database_is_an_alert_of_its_own(harness: Harness) -> None:
    deps = replace(harness.engine.deps, notes=BrokenNotes(harness.engine.deps.notes))
    messages = await check_alerts(deps, harness.clock())
    assert any("own database cannot be written" in m.text for m in messages)


async def test_snooze_and_mute_quiet_an_alert_by_its_id(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    heal_units(harness)
    fill(harness, "/data", 91)
    assert len(await check_alerts(deps, clock())) == 1
    listing = await harness.say("/alerts", VIEWER)
    ident = alert_id("disk:/data")
    assert f"<code>{ident}</code>" in listing
    assert "needs the operator role" in await harness.say(f"/snooze {ident}", VIEWER)
    assert "no messages about it until" in await harness.say(f"/snooze {ident}", OPERATOR)
    assert "quiet until" in await harness.say("/alerts")
    fill(harness, "/data", 93)
    assert await check_alerts(deps, clock()) == []  # still a warning: snoozed, held back
    fill(harness, "/data", 97)
    (critical,) = await check_alerts(deps, clock())  # a level higher breaks through (#19)
    assert "Critical" in critical.text
    assert "quiet until" not in await harness.say("/alerts")  # and ends the snooze
    clock.advance(minutes=61)
    fill(harness, "/data", 40)
    (recovered,) = await check_alerts(deps, clock())
    assert recovered.text.startswith("✅ Recovered: disk /data is 40% full")
    fill(harness, "/data", 92)
    await check_alerts(deps, clock())
    assert "no messages about it until" in await harness.say(f"/mute {ident}")
    clock.advance(hours=23)
    fill(harness, "/data", 10)
    assert await check_alerts(deps, clock()) == []  # muted for a day
    assert "There is no alert 000000" in await harness.say("/snooze 000000")


async def test_the_report_says_when_a_filling_disk_will_be_full(harness: Harness) -> None:
    deps, clock = harness.engine.deps, harness.clock
    assert deps.samples is not None
    await check_alerts(deps, clock())
    assert await deps.samples.series("disk:/data", clock() - timedelta(hours=1)) == [
        (clock(), 71.0)
    ]
    # /data went from 64% to 71% over the last week: 1% a day, so 29 days are left.
    start = clock() - timedelta(days=7)
    for hour in range(0, 7 * 24, 6):
        await deps.samples.add(start + timedelta(hours=hour), {"disk:/data": 64 + hour / 24})
    report = await harness.say("/report")
    assert "<code>/data</code> 71% of 100 GiB, full in ~29 days" in report
    assert "⚠️ <code>/data</code>" in report
    assert "<code>/</code> 63% of 38 GiB\n" in report  # no trend there: no estimate


async def test_samples_older_than_the_cutoff_are_purged(harness: Harness) -> None:
    samples, now = harness.engine.deps.samples, harness.clock()
    assert samples is not None
    await samples.add(now - timedelta(days=400), {"memory": 50.0})
    await samples.add(now, {"memory": 60.0, "disk:/": 70.0})
    assert await samples.purge(now - timedelta(days=366)) == 1
    assert await samples.series("memory", now - timedelta(days=500)) == [(now, 60.0)]


async def test_the_heartbeat_pings_its_url_every_minute_and_survives_a_dead_one(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pings: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        pings.append(request.path)
        return web.Response(text="OK")

    server = web.Application()
    server.router.add_get("/ping/{uuid}", ping)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("STEWARD_HEARTBEAT_URL", f"http://127.0.0.1:{port}/ping/abc")
    app = build_app(load_settings(), demo=True)
    routine = Routine(app)
    await routine.start()
    try:
        assert {name: when for name, when, _ in routine.planned()}["heartbeat"] == "60s"
        await routine._heartbeat()
        assert pings == ["/ping/abc"]
        await runner.cleanup()  # the checker is down: a warning, and the bot goes on
        await routine._heartbeat()
        assert "heartbeat failed" in caplog.text
    finally:
        routine.stop()
        app.close()

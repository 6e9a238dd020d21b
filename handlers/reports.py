"""Reports: /report, /report week, /subscribe, /unsubscribe and /schedule; the daily report the
scheduler sends, and the weekly one (the alerts are in ``handlers.alerts``).

The weekly report is the health report with a chart of the week's disk, memory and load. Unlike
the daily report it always comes (silent, as a routine report), even when all is green. The
chart is drawn in a child process (``providers.charts.week``) from the samples the alert check
keeps; when it cannot be drawn, the report still goes out and says so.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from handlers.alert_rules import DISK, MEMORY, Level
from handlers.alerts import LOAD, alert_states, full_in_days
from handlers.backups import check_lines, last_backups
from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Attachment, ChatRef, Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Choice, Role, Word
from handlers.core.text import duration, mark
from handlers.hardware import hardware_lines
from handlers.public_address import address_lines
from providers.charts.week import ChartData, ChartError, render_week_chart
from providers.host.base import DiskUsage, UnitError
from providers.server.base import ServerError
from providers.storage.base import StorageError

log = logging.getLogger(__name__)
commands = Registry()
SUBSCRIPTIONS = "subscriptions"
GiB = 1024**3
WEEK = timedelta(days=7)
DAILY_HEADING = "<b>Daily report</b>"


# --- who hears it ------------------------------------------------------------------------------


async def subscribers(deps: Deps) -> list[ChatRef]:
    raw = await deps.notes.get(SUBSCRIPTIONS)
    if not raw:
        return []
    return [ChatRef(str(t), str(c)) for t, c in json.loads(raw)]


async def _save_subscribers(deps: Deps, chats: list[ChatRef], now: datetime) -> None:
    value = json.dumps([[chat.transport, chat.chat_id] for chat in chats])
    await deps.notes.set(SUBSCRIPTIONS, value, now)


@commands.command("subscribe", "Send the reports and alerts to this chat", role=Role.ADMIN)
async def subscribe(ctx: Context) -> Reply:
    chats = await subscribers(ctx.deps)
    chat = ctx.command.chat
    if chat in chats:
        return Reply("This chat already gets the reports and alerts.")
    await _save_subscribers(ctx.deps, [*chats, chat], ctx.now)
    return Reply(
        "✅ This chat now gets the daily report and the alerts. Until some chat subscribes, "
        "they go to the admins."
    )


@commands.command("unsubscribe", "Stop the reports and alerts in this chat", role=Role.ADMIN)
async def unsubscribe(ctx: Context) -> Reply:
    chats = await subscribers(ctx.deps)
    chat = ctx.command.chat
    if chat not in chats:
        return Reply("This chat does not get the reports and alerts.")
    rest = [c for c in chats if c != chat]
    await _save_subscribers(ctx.deps, rest, ctx.now)
    after = "the admins' chats" if not rest else f"{len(rest)} other chat(s)"
    return Reply(f"This chat no longer gets them; they go to {after}.")


# --- the daily report ----------------------------------------------------------------------------


async def build_report(deps: Deps, now: datetime) -> Reply:
    """The health report: silent when everything is green."""
    green = True
    try:
        m = await deps.host.metrics()
    except OSError as exc:
        return Reply(f"⚠️ Health report: the host metrics cannot be read ({esc(exc)}).")
    generations = []
    try:
        generations = await deps.nixos.generations()
    except UnitError:
        green = False
    current = next((g for g in generations if g.current), None)
    reboot = await deps.nixos.reboot_needed()
    lines = [f"<b>Daily report</b> for {esc(m.hostname)}, {now.astimezone(deps.timezone):%a %d %b}"]
    head = f"⏱ up {duration(m.uptime_seconds)}"
    if current is not None:
        head += f", generation {current.number} (NixOS {esc(current.nixos_version)})"
    lines.append(head)
    if reboot:
        lines.append("🔁 a reboot is due: the current generation's kernel does not run yet")
    load = m.load[0] / m.cores
    green &= load < 1.0 and m.memory_used_percent < MEMORY.warn
    lines.append(
        f"{mark(load < 1.0)} load {m.load[0]:.2f} on {m.cores} cores, "
        f"{mark(m.memory_used_percent < MEMORY.warn)} memory {m.memory_used_percent:.0f}% "
        f"of {m.memory_total_bytes / GiB:.1f} GiB"
    )
    disk_lines = [
        *await _disk_lines(deps, m.disks, now),
        *await hardware_lines(deps, now),
        *await address_lines(deps),
    ]
    green &= all(line.startswith("✅") for line in disk_lines)
    lines.extend(disk_lines)
    try:
        failed = await deps.services.failed_units()
    except UnitError:
        failed = None
    if failed:
        green = False
        lines.append(f"❌ failed units: {esc(', '.join(failed))}")
    elif failed is None:
        green = False
        lines.append("⚠️ failed units: unknown (systemd did not answer)")
    else:
        lines.append("✅ no failed units")
    cert_lines = await _certificate_lines(deps, now)
    green &= all(line.startswith("✅") for line in cert_lines)
    lines.extend(cert_lines)
    backup_lines = await last_backups(deps, now)
    if deps.backups is not None:
        backup_lines += await check_lines(deps)
    green &= all(line.startswith("✅") for line in backup_lines)
    lines.extend(backup_lines)
    lines.extend(await _provider_lines(deps))
    open_alerts = [s for s in await alert_states(deps) if s.level is not Level.OK]
    if open_alerts:
        green = False
        lines.append(f"🚨 {len(open_alerts)} open alert(s): /alerts")
    return Reply("\n".join(lines), silent=green)


async def _disk_lines(deps: Deps, disks: Sequence[DiskUsage], now: datetime) -> list[str]:
    lines = []
    for disk in disks:
        days = await full_in_days(deps, disk.mount, now)
        ok = disk.percent < DISK.warn and (days is None or days > 30)
        soon = f", full in ~{days:.0f} days" if days is not None and days < 90 else ""
        lines.append(
            f"{mark(ok)} <code>{esc(disk.mount)}</code> {disk.percent:.0f}% of "
            f"{disk.total_bytes / GiB:.0f} GiB{soon}"
        )
    return lines


async def _certificate_lines(deps: Deps, now: datetime) -> list[str]:
    lines = []
    for name, expires in (await deps.host.certificates(deps.site.acme_dir)).items():
        days = (expires - now).total_seconds() / 86400 if expires is not None else None
        ok = days is not None and days >= 14
        shown = f"{days:.0f} days left" if days is not None else "cannot be read"
        lines.append(f"{mark(ok)} certificate {esc(name)}: {shown}")
    return lines


async def _provider_lines(deps: Deps) -> list[str]:
    lines = []
    if deps.cloud is not None:
        try:
            info = await deps.cloud.this_server()
            price = f", {info.price_monthly} a month" if info.price_monthly else ""
            lines.append(f"☁️ server {esc(info.status)}{esc(price)}")
        except ServerError as exc:
            lines.append(f"☁️ server: {esc(exc)}")
    if deps.storage is not None:
        try:
            bucket = await deps.storage.bucket_info()
            lines.append(
                f"🪣 bucket {bucket.total_bytes / 1000**3:.1f} GB, about "
                f"{bucket.monthly_cost:.2f} {esc(bucket.currency)} a month"
            )
        except StorageError as exc:
            lines.append(f"🪣 bucket: {esc(exc)}")
    return lines


@commands.command("report", "The health report, now")
async def report(ctx: Context) -> Reply:
    return await build_report(ctx.deps, ctx.now)


# --- schedules ------------------------------------------------------------------------------

TASKS = ("backup", "report")
EVERY = Arg("every", Choice(("daily", "weekly", "monthly")))
AT = Arg("time", Word(metavar="HH:MM", pattern=r"([01]?[0-9]|2[0-3]):[0-5][0-9]"))


@commands.command("schedule", "Show what runs when")
async def schedule(ctx: Context) -> Reply:
    if ctx.deps.schedules is None:
        return Reply("Nothing is scheduled here: the scheduler runs with <code>steward run</code>.")
    planned = ctx.deps.schedules.planned()
    if not planned:
        return Reply("Nothing is scheduled.")
    lines = ["<b>Schedules</b>"]
    for name, when, next_run in planned:
        after = f", next {ctx.local(next_run):%a %d %b %H:%M}" if next_run else ", paused"
        lines.append(f"🗓 {esc(name)}: {esc(when)}{after}")
    lines.append("Change one: <code>/schedule report daily 08:00</code>.")
    return Reply("\n".join(lines))


async def _set(ctx: Context, task: str, every: str, time: str) -> Reply:
    schedules = ctx.deps.schedules
    if schedules is None:
        raise CommandError("The scheduler runs with <code>steward run</code>, not here.")
    if task == "backup" and "backup" not in schedules.tasks():
        raise CommandError("Backups are not set up: set STEWARD_RESTIC_REPOSITORY first.")
    await schedules.plan(task, f"{every} {time}")
    return Reply(f"✅ {task.capitalize()}: {every} at {time} ({ctx.deps.timezone}).")


@commands.command("schedule report", "When the daily report comes", args=(EVERY, AT),
                  role=Role.ADMIN)  # fmt: skip
async def schedule_report(ctx: Context, every: str, time: str) -> Reply:
    return await _set(ctx, "report", every, time)


@commands.command("schedule backup", "When the backups run", args=(EVERY, AT), role=Role.ADMIN)
async def schedule_backup(ctx: Context, every: str, time: str) -> Reply:
    return await _set(ctx, "backup", every, time)


# --- the weekly report -------------------------------------------------------------------------


@commands.command("report week", "The weekly report with its chart, now")
async def report_week(ctx: Context) -> Reply:
    return replace(await weekly_report(ctx.deps, ctx.now), silent=False)


async def weekly_report(deps: Deps, now: datetime, *, chart_seconds: float = 30) -> Reply:
    since = now - WEEK
    lines = [f"📈 <b>Week of {since.astimezone(deps.timezone):%d %b %Y}</b>"]
    daily = await build_report(deps, now)
    lines.append("All green this week." if daily.silent else _body(daily.text))
    series = await _series(deps, since)
    attachments: tuple[Attachment, ...] = ()
    if not any(series.values()):
        lines.append("📉 No samples were kept this week, so there is no chart.")
    else:
        title = f"Disk, memory and load, {_span(deps, since, now)}"
        local = {
            name: [(at.astimezone(deps.timezone), value) for at, value in points]
            for name, points in series.items()
            if points
        }
        data = ChartData(title, since.astimezone(deps.timezone), now.astimezone(deps.timezone),
                         local)  # fmt: skip
        try:
            png = await render_week_chart(data, chart_seconds)
            attachments = (Attachment("week.png", png, "image/png"),)
        except ChartError as exc:
            log.warning("weekly chart: %s", exc)
            lines.append(f"⚠️ The chart could not be drawn: {esc(exc)}")
    return Reply("\n".join(lines), attachments=attachments, silent=True)


def _body(text: str) -> str:
    """The daily report without its own heading line."""
    first, _, rest = text.partition("\n")
    return rest if first.startswith(DAILY_HEADING) and rest else text


async def _series(deps: Deps, since: datetime) -> dict[str, list[tuple[datetime, float]]]:
    """Chart name -> samples, oldest first; the disks are those the host has now."""
    if deps.samples is None:
        return {}
    try:
        mounts = [disk.mount for disk in (await deps.host.metrics()).disks]
    except OSError:
        mounts = []
    wanted = [(f"disk {mount}", f"disk:{mount}") for mount in mounts]
    wanted += [("memory", "memory"), ("load", LOAD)]
    found: dict[str, list[tuple[datetime, float]]] = {}
    for name, metric in wanted:
        try:
            points = await deps.samples.series(metric, since)
        except Exception:  # noqa: BLE001 - whatever the database raises, the report still goes
            log.warning("weekly chart: the samples of %s cannot be read", metric)
            points = []
        found[name] = [(at, value) for at, value in points if math.isfinite(value)]
    return found


def _span(deps: Deps, since: datetime, until: datetime) -> str:
    start, end = since.astimezone(deps.timezone), until.astimezone(deps.timezone)
    return f"{start:%a %d %b} to {end:%a %d %b %Y}"

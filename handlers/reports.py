"""Reports and alerts: /report, /alerts, /subscribe, /unsubscribe and /schedule, and what the
scheduler runs: the daily report and the alert check."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta

from handlers.alerting import (
    DISK,
    MEMORY,
    AlertState,
    Kind,
    Level,
    Thresholds,
    Transition,
    step,
)
from handlers.backups import backup_readings, check_lines, last_backups
from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Button, ChatRef, Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Choice, Integer, Role, Word
from handlers.core.text import duration, mark
from providers.base.server import ServerError
from providers.base.storage import StorageError
from providers.host import DiskUsage
from providers.systemd import UnitError

log = logging.getLogger(__name__)
commands = Registry()
SUBSCRIPTIONS = "subscriptions"
ALERT = "alert:"
ALERT_KEYS = "alerts"
GiB = 1024**3


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
    disk_lines = await _disk_lines(deps, m.disks, now)
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


# --- alerts ---------------------------------------------------------------------------------


async def alert_states(deps: Deps) -> list[AlertState]:
    raw = await deps.notes.get(ALERT_KEYS)
    keys: list[str] = json.loads(raw) if raw else []
    states = []
    for key in keys:
        stored = await deps.notes.get(ALERT + key)
        if stored:
            states.append(_load_state(stored))
    return states


def _load_state(text: str) -> AlertState:
    data = json.loads(text)
    return AlertState(
        data["key"], Level(data["level"]), Level(data["announced"]),
        datetime.fromisoformat(data["opened_at"]) if data["opened_at"] else None,
        data["detail"],
        datetime.fromisoformat(data["snoozed_until"]) if data["snoozed_until"] else None,
    )  # fmt: skip


def _dump_state(state: AlertState) -> str:
    data = asdict(state)
    for key in ("opened_at", "snoozed_until"):
        data[key] = data[key].isoformat() if data[key] else None
    data["level"], data["announced"] = int(state.level), int(state.announced)
    return json.dumps(data)


Reading = tuple[str, Thresholds | None, float, str]
LOAD = "load"  # a sample only, for the weekly chart: the 1-minute load in percent of the cores


async def _readings(deps: Deps, now: datetime) -> list[Reading]:
    """(key, thresholds, value, detail). Without thresholds, value is the Level itself."""
    found: list[Reading] = []
    try:
        m = await deps.host.metrics()
    except OSError:
        m = None
    if m is not None:
        for disk in m.disks:
            found.append((f"disk:{disk.mount}", DISK, disk.percent,
                          f"disk {disk.mount} is {disk.percent:.0f}% full"))  # fmt: skip
        found.append(("memory", MEMORY, m.memory_used_percent,
                      f"memory is {m.memory_used_percent:.0f}% used"))  # fmt: skip
        found.append((LOAD, None, 100 * m.load[0] / m.cores, ""))
    try:
        failed = await deps.services.failed_units()
        detail = f"failed units: {', '.join(failed)}" if failed else "no failed units"
        found.append(("units", None, float(Level.WARN if failed else Level.OK), detail))
    except UnitError:
        pass
    for name, expires in (await deps.host.certificates(deps.site.acme_dir)).items():
        if expires is None:
            continue
        days = (expires - now).total_seconds() / 86400
        level = Level.CRITICAL if days < 7 else Level.WARN if days < 14 else Level.OK
        found.append((f"cert:{name}", None, float(level),
                      f"the certificate of {name} expires in {max(days, 0):.0f} days"))  # fmt: skip
    found.extend(await backup_readings(deps, now))
    try:
        await deps.notes.set("alerts:probe", now.isoformat(), now)
    except Exception:  # noqa: BLE001 - whatever the database raises, it is the alert
        found.append(("database", None, float(Level.CRITICAL),
                      "the bot's own database cannot be written"))  # fmt: skip
    return found


async def check_alerts(deps: Deps, now: datetime) -> list[Reply]:
    """Read everything once, move each alert's state, and return the messages to send."""
    states = {state.key: state for state in await alert_states(deps)}
    known = sorted(states)
    messages: list[Reply] = []
    readings = await _readings(deps, now)
    await _keep_samples(deps, now, readings)
    for key, thresholds, value, detail in readings:
        if key == LOAD:
            continue  # charted, not alerted on
        state = states.get(key, AlertState(key))
        level = Level(int(value)) if thresholds is None else thresholds.level(value, state.level)
        new, transition = step(state, level, detail, now)
        if transition is not None and transition.delivered:
            messages.append(alert_message(transition))
        if new != state or key not in states:
            states[key] = new
            try:
                await deps.notes.set(ALERT + key, _dump_state(new), now)
            except Exception:  # noqa: BLE001 - the database alert above says so already
                log.warning("could not store the state of alert %s", key)
    if sorted(states) != known:
        try:
            await deps.notes.set(ALERT_KEYS, json.dumps(sorted(states)), now)
        except Exception:  # noqa: BLE001
            log.warning("could not store the list of alerts")
    return messages


async def _keep_samples(deps: Deps, now: datetime, readings: list[Reading]) -> None:
    """Disk and memory percent, for the "full in ~N days" estimate, and the load, for the
    weekly chart; a year is kept."""
    if deps.samples is None:
        return
    values = {key: value for key, thresholds, value, _ in readings
              if thresholds is not None or key == LOAD}  # fmt: skip
    try:
        await deps.samples.add(now, values)
    except Exception:  # noqa: BLE001 - the database alert says so; samples are not vital
        log.warning("could not keep the host samples")


async def full_in_days(deps: Deps, mount: str, now: datetime) -> float | None:
    """Days until ``mount`` is full at the pace of the last week (least squares), or None when
    it is not filling up or there are too few samples."""
    if deps.samples is None:
        return None
    points = await deps.samples.series(f"disk:{mount}", now - timedelta(days=7))
    if len(points) < 12:
        return None
    xs = [(at - points[0][0]).total_seconds() / 86400 for at, _ in points]
    ys = [value for _, value in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    if slope <= 0.01:  # percent per day: not filling up
        return None
    return max(0.0, (100.0 - ys[-1]) / slope)


def alert_message(transition: Transition) -> Reply:
    detail = esc(transition.detail)
    if transition.kind is Kind.RECOVERED:
        lasted = transition.lasted.total_seconds() if transition.lasted else 0.0
        return Reply(f"✅ Recovered: {detail} (it lasted {duration(lasted)}).", silent=True)
    icon, word = ("🚨", "Critical") if transition.kind is Kind.CRITICAL else ("⚠️", "Warning")
    short = alert_id(transition.key)
    buttons = (
        Button.run("Snooze 1h", f"snooze {short}"),
        Button.run("Mute 24h", f"mute {short}"),
        Button.run("Details", f"details {short}"),
    )
    return Reply(f"{icon} <b>{word}</b>: {detail}.", buttons=buttons)


@commands.command("alerts", "The open alerts")
async def alerts(ctx: Context) -> Reply:
    open_ = [s for s in await alert_states(ctx.deps) if s.level is not Level.OK]
    if not open_:
        return Reply("✅ No open alerts.")
    lines = ["<b>Open alerts</b>"]
    for state in sorted(open_, key=lambda s: -int(s.level)):
        icon = "🚨" if state.level is Level.CRITICAL else "⚠️"
        since = f" since {ctx.local(state.opened_at):%d %b %H:%M}" if state.opened_at else ""
        quiet = (
            f", quiet until {ctx.local(state.snoozed_until):%d %b %H:%M}"
            if state.quiet(ctx.now) and state.snoozed_until is not None
            else ""
        )
        lines.append(
            f"{icon} {esc(state.detail)}{since}{quiet} — <code>{alert_id(state.key)}</code>"
        )
    lines.append(
        "<code>/snooze ID</code> quiets one for an hour, <code>/mute ID</code> for a day; "
        "<code>/details ID</code> says more."
    )
    return Reply("\n".join(lines))


def alert_id(key: str) -> str:
    """A short, stable name for an alert, to type on a phone."""
    return hashlib.sha256(key.encode()).hexdigest()[:6]


ALERT_ID = Arg("alert", Word(metavar="alert", pattern=r"[0-9a-f]{6}"))


async def _alert(ctx: Context, alert: str) -> AlertState:
    state = next((s for s in await alert_states(ctx.deps) if alert_id(s.key) == alert), None)
    if state is None:
        raise CommandError(f"There is no alert {esc(alert)}; /alerts lists them with their ids.")
    return state


async def _quiet(ctx: Context, alert: str, hours: int) -> Reply:
    state = await _alert(ctx, alert)
    until = ctx.now + timedelta(hours=hours)
    await ctx.deps.notes.set(ALERT + state.key, _dump_state(replace(state, snoozed_until=until)),
                             ctx.now)  # fmt: skip
    return Reply(
        f"🔕 {esc(state.detail)}: no messages about it until "
        f"{ctx.local(until):%d %b %H:%M}. It stays in /alerts."
    )


@commands.command("snooze", "Quiet an alert for an hour", args=(ALERT_ID,), role=Role.OPERATOR,
                  button=True)  # fmt: skip
async def snooze(ctx: Context, alert: str) -> Reply:
    return await _quiet(ctx, alert, 1)


@commands.command("mute", "Quiet an alert for a day", args=(ALERT_ID,), role=Role.OPERATOR,
                  button=True)  # fmt: skip
async def mute(ctx: Context, alert: str) -> Reply:
    return await _quiet(ctx, alert, 24)


@commands.command("details", "More about an alert", args=(ALERT_ID,), button=True)
async def details(ctx: Context, alert: str) -> Reply:
    state = await _alert(ctx, alert)
    level = {Level.OK: "✅ ok now", Level.WARN: "⚠️ warning", Level.CRITICAL: "🚨 critical"}
    lines = [f"<b>{esc(state.detail)}</b>", f"Level: {level[state.level]}"]
    if state.opened_at is not None and state.level is not Level.OK:
        lasted = duration((ctx.now - state.opened_at).total_seconds())
        lines.append(f"Open since {ctx.local(state.opened_at):%d %b %H:%M} ({lasted}).")
    if state.quiet(ctx.now) and state.snoozed_until is not None:
        lines.append(f"Quiet until {ctx.local(state.snoozed_until):%d %b %H:%M}.")
    if state.key.startswith("disk:"):
        lines += await _disk_details(ctx, state.key.removeprefix("disk:"))
    return Reply("\n".join(lines))


async def _disk_details(ctx: Context, mount: str) -> list[str]:
    lines = []
    days = await full_in_days(ctx.deps, mount, ctx.now)
    if days is not None:
        lines.append(f"At this week's pace it is full in ~{days:.0f} days.")
    folders = [f for sid in ctx.deps.catalogue for f in ctx.deps.catalogue[sid].folders]
    try:
        sizes = await ctx.deps.host.folder_sizes(folders)
    except OSError:
        return lines
    biggest = sorted(((n, f) for f, n in sizes.items() if n), reverse=True)[:5]
    if biggest:
        lines.append("Biggest service folders:")
        lines += [f"• <code>{esc(f)}</code> {n / 1000**3:.1f} GB" for n, f in biggest]
    return lines


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


# --- the demo ------------------------------------------------------------------------------


PERCENT = Arg("percent", Integer(metavar="percent", minimum=0, maximum=100))


@commands.command("demo disk", "Demo server: fill the first disk, then check the alerts",
                  args=(PERCENT,), role=Role.ADMIN)  # fmt: skip
async def demo_disk(ctx: Context, percent: int) -> Reply:
    if ctx.deps.demo is None:
        raise CommandError("/demo works on the demo server only.")
    mount = ctx.deps.demo.fill_disk(float(percent))
    found = await check_alerts(ctx.deps, ctx.now)
    lines = [f"Demo: <code>{esc(mount)}</code> is now {percent}% full. The alert check says:"]
    lines.extend(reply.text for reply in found)
    if not found:
        lines.append("nothing new (alerts are sent on changes only).")
    buttons = next((reply.buttons for reply in found if reply.buttons), ())
    return Reply("\n".join(lines), buttons=buttons)

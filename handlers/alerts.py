"""Alerts: the check every few minutes, its messages with their buttons, and /alerts,
/snooze, /mute, /details; and /demo disk, which fills the demo's disk to show one.

Only transitions are sent (``handlers.alert_rules`` holds the state machine); each alert's state
is kept in the notes under ``alert:<key>``. Host readings are kept as samples at each check,
for the "full in ~N days" estimate and the weekly chart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from datetime import datetime, timedelta

from handlers.alert_rules import (
    DISK,
    MEMORY,
    AlertState,
    Kind,
    Level,
    Thresholds,
    Transition,
    step,
)
from handlers.backups import backup_readings
from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Button, Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Integer, Role, Word
from handlers.core.text import duration
from handlers.hardware import hardware_readings
from providers.host.base import UnitError

log = logging.getLogger(__name__)
commands = Registry()
ALERT = "alert:"
ALERT_KEYS = "alerts"


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
        Level(data["snoozed_level"]) if data.get("snoozed_level") is not None else None,
    )  # fmt: skip


def _dump_state(state: AlertState) -> str:
    data = asdict(state)
    for key in ("opened_at", "snoozed_until"):
        data[key] = data[key].isoformat() if data[key] else None
    data["level"], data["announced"] = int(state.level), int(state.announced)
    if state.snoozed_level is not None:
        data["snoozed_level"] = int(state.snoozed_level)
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
    open_keys = {s.key for s in await alert_states(deps) if s.level is not Level.OK}
    found.extend(await hardware_readings(deps, now, open_keys))
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
    await ctx.deps.notes.set(ALERT + state.key, _dump_state(replace(state, snoozed_until=until,
                             snoozed_level=state.announced)), ctx.now)  # fmt: skip
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

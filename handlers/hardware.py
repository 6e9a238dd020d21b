"""One's own hardware: disk health (SMART), RAID arrays and pools, and the UPS. The lines
/status and /report show, and the readings the alert check turns into alerts.

Each item gets a level: a failing disk (SMART failed, a prefail attribute past its threshold,
an NVMe critical warning), a degraded or failed array and a UPS on low battery are critical;
pending or uncorrectable sectors, reallocated sectors that rose in the last day, an array
rebuilding, a UPS on battery or not answering are warnings.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from handlers.alert_rules import Level
from handlers.core.context import Deps
from handlers.core.messages import esc
from handlers.core.text import duration
from providers.hardware.base import ArrayHealth, DiskHealth, UpsStatus

ICON = {Level.OK: "✅", Level.WARN: "⚠️", Level.CRITICAL: "❌"}
REALLOCATED = "smart:reallocated:"  # notes: the count last seen and when it last rose
RISING_FOR = timedelta(days=1)
HOT_CELSIUS = 60
Reading = tuple[str, None, float, str]


# --- levels ----------------------------------------------------------------------------------


def _problems(disk: DiskHealth, rising: tuple[int, int] | None) -> tuple[str, list[str]]:
    """Why the disk is failing ("" if it is not), and what is wrong short of that."""
    why = ""
    if disk.critical_warning:
        why = f"NVMe critical warning 0x{disk.critical_warning:02x}"
    elif disk.passed is False:
        why = "SMART says it is failing"
    elif disk.failing:
        why = "a SMART attribute is past its threshold"
    bad = [f"{count} {what} sectors" for what, count in
           (("pending", disk.pending), ("uncorrectable", disk.uncorrectable)) if count]  # fmt: skip
    if rising is not None:
        bad.append(f"reallocated sectors rose from {rising[0]} to {rising[1]}")
    return why, bad


def disk_level(disk: DiskHealth, rising: tuple[int, int] | None) -> tuple[Level, str]:
    """The level and one sentence; ``rising`` is (before, now) when reallocated sectors rose
    in the last day."""
    why, bad = _problems(disk, rising)
    name = f"disk {disk.name}"
    if why:
        return Level.CRITICAL, f"{name} is failing: {why}; back it up and replace it"
    if bad:
        return Level.WARN, f"{name} has {', '.join(bad)}"
    return Level.OK, f"{name} is healthy (SMART passed, no pending sectors)"


def array_level(array: ArrayHealth) -> tuple[Level, str]:
    what = {"mdadm": "RAID", "zfs": "ZFS pool", "btrfs": "btrfs"}[array.kind]
    name = f"{what} {array.name}"
    if array.state in {"degraded", "failed"}:
        return Level.CRITICAL, f"{name} is {array.state}: {array.detail}"
    if array.state == "rebuilding":
        return Level.WARN, f"{name} is rebuilding: {array.detail}"
    return Level.OK, f"{name} is healthy: {array.detail}"


def ups_level(ups: UpsStatus | None, error: str = "") -> tuple[Level, str]:
    if ups is None:
        return Level.WARN, f"the UPS does not answer: {error}"
    left = f", ~{ups.runtime_minutes:.0f} min left" if ups.runtime_minutes is not None else ""
    charge = f", battery {ups.charge:.0f}%" if ups.charge is not None else ""
    if ups.low_battery:
        return Level.CRITICAL, f"UPS {ups.name} is on battery and the battery is low{left}"
    if ups.on_battery:
        return Level.WARN, f"UPS {ups.name} is on battery (power cut){charge}{left}"
    return Level.OK, f"UPS {ups.name} is on mains{charge}{left}"


# --- reallocated sectors: a count that only matters when it rises ------------------------------


async def _rising(
    deps: Deps, disk: DiskHealth, now: datetime, *, keep: bool
) -> tuple[int, int] | None:
    """(before, now) when the disk's reallocated count rose in the last day. Many old disks
    carry a few reallocated sectors for years: only a rise says something is going on."""
    if disk.reallocated is None:
        return None
    key = REALLOCATED + (disk.serial or disk.device)
    raw = await deps.notes.get(key)
    seen = json.loads(raw) if raw else None
    count = disk.reallocated
    if seen is None or count < seen["count"]:
        seen = {"count": count, "before": count, "rose_at": None}
    elif count > seen["count"]:
        seen = {"count": count, "before": seen["count"], "rose_at": now.isoformat()}
    if keep and raw != json.dumps(seen):
        await deps.notes.set(key, json.dumps(seen), now)
    rose_at = seen["rose_at"]
    if rose_at and now - datetime.fromisoformat(rose_at) < RISING_FOR:
        return int(seen["before"]), int(seen["count"])
    return None


# --- /status and /report ---------------------------------------------------------------------


def _disk_line(disk: DiskHealth, rising: tuple[int, int] | None) -> str:
    device = f"disk <code>{esc(disk.device)}</code>"
    if disk.asleep:
        return f"✅ {device} asleep (not woken up to be read)"
    if disk.problem:
        return f"❔ {device}: cannot be read ({esc(disk.problem)})"
    level, _ = disk_level(disk, rising)
    why, bad = _problems(disk, rising)
    facts = [why or "SMART passed", *bad]
    if disk.reallocated and rising is None:
        facts.append(f"{disk.reallocated} reallocated")
    if disk.percentage_used is not None:
        facts.append(f"{disk.percentage_used}% worn")
    if disk.temperature is not None:
        facts.append(f"{disk.temperature} °C" + (" 🔥" if disk.temperature >= HOT_CELSIUS else ""))
    model = f" ({esc(disk.model)})" if disk.model else ""
    return f"{ICON[level]} {device}{model}: {esc(', '.join(facts))}"


async def hardware_lines(deps: Deps, now: datetime) -> list[str]:
    """Disks, arrays and the UPS, one line each; nothing for what is not configured."""
    lines: list[str] = []
    if deps.disks is not None:
        try:
            disks = await deps.disks.disks()
        except OSError as exc:
            lines.append(f"❔ disk health: {esc(exc)}")
            disks = []
        for disk in disks:
            lines.append(_disk_line(disk, await _rising(deps, disk, now, keep=False)))
        stale = next((d.stale_seconds for d in disks if d.stale_seconds), None)
        if stale is not None:
            lines.append(f"⚠️ disk health was last recorded {duration(stale)} ago: "
                         "is steward-health.timer running?")  # fmt: skip
    if deps.arrays is not None:
        arrays, _ = await deps.arrays.arrays()
        for array in arrays:
            level, detail = array_level(array)
            lines.append(f"{ICON[level]} {esc(detail)}")
    if deps.ups is not None:
        level, detail = await _ups(deps)
        lines.append(f"{ICON[level]} {esc(detail)}")
    return lines


async def _ups(deps: Deps) -> tuple[Level, str]:
    assert deps.ups is not None  # noqa: S101 - callers check
    try:
        return ups_level(await deps.ups.status())
    except OSError as exc:
        return ups_level(None, str(exc))


# --- the alert check -------------------------------------------------------------------------


async def hardware_readings(deps: Deps, now: datetime, open_keys: set[str]) -> list[Reading]:
    """(key, None, level, detail) for the alert check. An array that was alerted on and is no
    longer listed by a tool that answered (``zpool status -x`` lists only sick pools) is
    healthy again."""
    found: list[Reading] = []
    if deps.disks is not None:
        try:
            disks = await deps.disks.disks()
        except OSError:
            disks = []  # unknown: no alert moves
        for disk in disks:
            if disk.asleep or disk.problem:
                continue
            level, detail = disk_level(disk, await _rising(deps, disk, now, keep=True))
            found.append((f"smart:{disk.device}", None, float(level), detail))
    if deps.arrays is not None:
        arrays, answered = await deps.arrays.arrays()
        seen = set()
        for array in arrays:
            level, detail = array_level(array)
            seen.add(key := f"array:{array.kind}:{array.name}")
            found.append((key, None, float(level), detail))
        for key in open_keys - seen:
            kind = key.split(":")[1] if key.startswith("array:") else ""
            if kind in answered:
                found.append((key, None, float(Level.OK), f"{key[6:]} is healthy again"))
    if deps.ups is not None:
        level, detail = await _ups(deps)
        found.append(("ups", None, float(level), detail))
    return found

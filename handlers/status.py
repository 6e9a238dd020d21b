"""/status: the host at a glance."""

from __future__ import annotations

import asyncio

from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.text import duration, mark
from handlers.hardware import hardware_lines
from providers.host.base import HostMetrics, UnitError

commands = Registry()
GiB = 1024**3


@commands.command("status", "Uptime, load, memory, disks, arrays, UPS and failed units")
async def status(ctx: Context) -> Reply:
    metrics_task = asyncio.create_task(ctx.deps.host.metrics())
    try:
        failed: list[str] | None = await ctx.deps.services.failed_units()
    except UnitError:
        failed = None
    reboot = await ctx.deps.nixos.reboot_needed()
    try:
        m = await metrics_task
    except OSError as exc:
        raise CommandError(f"Cannot read the host metrics: {esc(exc)}") from None
    load_ratio = m.load[0] / m.cores
    fleet = ctx.deps.fleet
    if fleet is not None and fleet.in_chat(ctx.command.chat):
        # Several Stewards answer here, one line each: the room reads as one table.
        return Reply(_one_line(fleet.name, m, failed, reboot=bool(reboot)))
    lines = [
        f"<b>{esc(m.hostname)}</b> up {duration(m.uptime_seconds)}",
        f"{mark(load_ratio < 1.0)} load {m.load[0]:.2f} / {m.load[1]:.2f} / {m.load[2]:.2f} "
        f"on {m.cores} cores",
        f"{mark(m.memory_used_percent < 90)} memory {m.memory_used_percent:.0f}% of "
        f"{m.memory_total_bytes / GiB:.1f} GiB used",
    ]
    for disk in m.disks:
        lines.append(
            f"{mark(disk.percent < 90)} disk <code>{esc(disk.mount)}</code> {disk.percent:.0f}% "
            f"of {disk.total_bytes / GiB:.0f} GiB"
        )
    lines.extend(await hardware_lines(ctx.deps, ctx.now))
    if failed is None:
        lines.append("⚠️ failed units: unknown (systemd did not answer)")
    elif failed:
        lines.append(f"❌ failed units: {esc(', '.join(failed))}")
    else:
        lines.append("✅ no failed units")
    if reboot:
        lines.append("🔁 reboot needed: the running kernel or initrd is not the current system's")
    return Reply("\n".join(lines))


def _one_line(name: str, m: HostMetrics, failed: list[str] | None, *, reboot: bool) -> str:
    fullest = max((disk.percent for disk in m.disks), default=0.0)
    ok = m.load[0] < m.cores and m.memory_used_percent < 90 and fullest < 90 and not failed
    units = "units unknown" if failed is None else f"{len(failed)} failed units"
    return (
        f"{mark(ok and failed is not None)} <b>{esc(name)}</b> up {duration(m.uptime_seconds)} · "
        f"load {m.load[0]:.2f} · mem {m.memory_used_percent:.0f}% · disk {fullest:.0f}% · "
        f"{units}{' · 🔁 reboot needed' if reboot else ''}"
    )

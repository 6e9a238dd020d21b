"""/services and /restart: the services of the catalogue and their systemd units."""

from __future__ import annotations

from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import SERVICE, Arg, Role
from providers.catalogue import ServiceInfo
from providers.systemd import Health, UnitError, worst

commands = Registry()
_ICON = {Health.ACTIVE: "🟢", Health.CHANGING: "🟡", Health.OFF: "⚪", Health.FAILED: "🔴"}
SERVICE_ARG = Arg("service", SERVICE, help="a service id from /services")


def find_service(ctx: Context, service_id: str) -> ServiceInfo:
    service = ctx.deps.catalogue.get(service_id)
    if service is None:
        known = ", ".join(ctx.deps.catalogue)
        raise CommandError(f"Unknown service {esc(service_id)}. Known services: {esc(known)}.")
    return service


@commands.command("services", "List the services and their state")
async def services(ctx: Context) -> Reply:
    catalogue = ctx.deps.catalogue
    if not catalogue:
        return Reply("No services are known: the service catalogue is empty or not configured.")
    try:
        units = await ctx.deps.services.status(catalogue.all_units)
    except UnitError as exc:
        raise CommandError(f"systemd did not answer: {esc(exc)}") from None
    lines = ["<b>Services</b>"]
    for sid in catalogue:
        info = catalogue[sid]
        statuses = [units[unit] for unit in info.units]
        health = worst(statuses)
        line = f"{_ICON[health]} <b>{esc(sid)}</b> {health.label}"
        bad = [s.name for s in statuses if s.health is not Health.ACTIVE]
        if bad and health is not Health.ACTIVE:
            line += f" ({esc(', '.join(bad))})"
        lines.append(line)
    return Reply("\n".join(lines))


@commands.command(
    "restart", "Restart a service", args=(SERVICE_ARG,), role=Role.OPERATOR, changes=True
)
async def restart(ctx: Context, service: str) -> Reply:
    info = find_service(ctx, service)
    for index, unit in enumerate(info.units, 1):
        await ctx.progress.update(
            f"Restarting {esc(info.name)}: <code>{esc(unit)}</code> ({index}/{len(info.units)})"
        )
        try:
            await ctx.deps.services.restart(unit)
        except UnitError as exc:
            raise CommandError(f"Restarting <code>{esc(unit)}</code> failed: {esc(exc)}") from None
    return await _report(ctx, info, "restarted and active", "restarted but it is {state}")


@restart.preview
async def _restart_preview(ctx: Context, service: str) -> str:
    info = find_service(ctx, service)
    units = ", ".join(f"<code>{esc(unit)}</code>" for unit in info.units)
    return f"Restarts {esc(info.name)}: {units}. Users lose their connection for a moment."


@restart.resume
async def _restart_resume(ctx: Context, service: str) -> Reply:
    info = find_service(ctx, service)
    return await _report(
        ctx,
        info,
        "is active (checked after the bot restarted)",
        "is {state} (checked after the bot restarted)",
    )


async def _report(ctx: Context, info: ServiceInfo, good: str, bad: str) -> Reply:
    try:
        units = await ctx.deps.services.status(info.units)
    except UnitError as exc:
        raise CommandError(f"systemd did not answer: {esc(exc)}") from None
    health = worst(list(units.values()))
    if health is Health.ACTIVE:
        return Reply(f"{_ICON[health]} {esc(info.name)} {good}.")
    raise CommandError(f"{esc(info.name)} {bad.format(state=health.label)}.")

"""The services of the catalogue and their systemd units: /services, /service, /start, /stop,
/restart and /logs.

A service's shared units (nginx, postgresql, redis: ``ServiceInfo.shared_units``) are shown with
it but never stopped, started or restarted on its behalf: other services depend on them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from handlers import rebuild
from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import SERVICE, Arg, Integer, Role
from providers.host.base import Health, UnitError, UnitStatus, worst
from providers.host.catalogue import ServiceInfo

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
        statuses = [units[unit] for unit in info.shown_units]
        health = worst(statuses)
        line = f"{_ICON[health]} <b>{esc(sid)}</b> {health.label}"
        bad = [s.name for s in statuses if s.health is not Health.ACTIVE]
        if bad and health is not Health.ACTIVE:
            line += f" ({esc(', '.join(bad))})"
        lines.append(line)
    return Reply("\n".join(lines))


@commands.command("service", "Show one service: units, state, memory, folders", args=(SERVICE_ARG,))
async def service_detail(ctx: Context, service: str) -> Reply:
    info = find_service(ctx, service)
    try:
        units = await ctx.deps.services.status(info.shown_units)
    except UnitError as exc:
        raise CommandError(f"systemd did not answer: {esc(exc)}") from None
    sizes = await ctx.deps.host.folder_sizes(info.folders)
    health = worst(list(units.values()))
    lines = [f"{_ICON[health]} <b>{esc(info.name)}</b> ({esc(info.id)}) {health.label}"]
    if info.description:
        lines.append(f"<i>{esc(info.description)}</i>")
    lines.append("")
    lines.extend(_unit_line(ctx, units[unit]) for unit in info.units)
    lines.extend(_unit_line(ctx, units[unit]) + ", shared" for unit in info.shared_units)
    for folder in info.folders:
        size = sizes.get(folder)
        shown = _size(size) if size is not None else "size unknown"
        lines.append(f"📁 <code>{esc(folder)}</code> {shown}")
    return Reply("\n".join(lines))


def _unit_line(ctx: Context, unit: UnitStatus) -> str:
    line = f"{_ICON[unit.health]} <code>{esc(unit.name)}</code> {esc(unit.active_state)}"
    if unit.sub_state and unit.sub_state != unit.active_state:
        line += f" ({esc(unit.sub_state)})"
    if unit.load_state == "not-found":
        line += ", not installed"
    if unit.since is not None:
        line += f", since {_when(unit.since.astimezone(ctx.deps.timezone))}"
    if unit.memory_bytes is not None:
        line += f", {_size(unit.memory_bytes)} memory"
    return line


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


Action = Callable[[str], Awaitable[None]]
_VERBS = {
    "start": ("Starting", "started and active", "started but it is {state}"),
    "stop": ("Stopping", "stopped", "still {state} after the stop"),
    "restart": ("Restarting", "restarted and active", "restarted but it is {state}"),
}


async def _act(ctx: Context, info: ServiceInfo, verb: str) -> Reply:
    doing, good, bad = _VERBS[verb]
    action: Action = getattr(ctx.deps.services, verb)
    # Stop in reverse order (the web server before its backend), start in order.
    units = list(reversed(info.units)) if verb == "stop" else list(info.units)
    for index, unit in enumerate(units, 1):
        await ctx.progress.update(
            f"{doing} {esc(info.name)}: <code>{esc(unit)}</code> ({index}/{len(units)})"
        )
        try:
            await action(unit)
        except UnitError as exc:
            raise CommandError(f"{doing} <code>{esc(unit)}</code> failed: {esc(exc)}") from None
    want = Health.OFF if verb == "stop" else Health.ACTIVE
    return await _report(ctx, info, want, good, bad)


def _preview(info: ServiceInfo, verb: str) -> str:
    units = ", ".join(f"<code>{esc(unit)}</code>" for unit in info.units)
    effect = {
        "start": "It becomes reachable again.",
        "stop": "It stays off until started again or the server reboots; its users are cut off.",
        "restart": "Users lose their connection for a moment.",
    }[verb]
    text = f"{verb.capitalize()}s {esc(info.name)}: {units}. {effect}"
    if info.shared_units:
        shared = ", ".join(f"<code>{esc(unit)}</code>" for unit in info.shared_units)
        text += f"\nShared with other services, left as they are: {shared}."
    return text


async def _resumed(ctx: Context, info: ServiceInfo, verb: str) -> Reply:
    want = Health.OFF if verb == "stop" else Health.ACTIVE
    after = " (checked after the bot restarted)"
    good = "is off" if verb == "stop" else "is active"
    return await _report(ctx, info, want, good + after, "is {state}" + after)


@commands.command(
    "start", "Start a service (bare: say hello)", args=(SERVICE_ARG,), role=Role.OPERATOR,
    changes=True, bare="hello",
)  # fmt: skip
async def start(ctx: Context, service: str) -> Reply:
    return await _act(ctx, find_service(ctx, service), "start")


@start.preview
async def _start_preview(ctx: Context, service: str) -> str:
    return _preview(find_service(ctx, service), "start")


@start.resume
async def _start_resume(ctx: Context, service: str) -> Reply:
    return await _resumed(ctx, find_service(ctx, service), "start")


@commands.command("stop", "Stop a service", args=(SERVICE_ARG,), role=Role.OPERATOR, changes=True)
async def stop(ctx: Context, service: str) -> Reply:
    return await _act(ctx, find_service(ctx, service), "stop")


@stop.preview
async def _stop_preview(ctx: Context, service: str) -> str:
    return _preview(find_service(ctx, service), "stop")


@stop.resume
async def _stop_resume(ctx: Context, service: str) -> Reply:
    return await _resumed(ctx, find_service(ctx, service), "stop")


@commands.command(
    "restart", "Restart a service", args=(SERVICE_ARG,), role=Role.OPERATOR, changes=True
)
async def restart(ctx: Context, service: str) -> Reply:
    return await _act(ctx, find_service(ctx, service), "restart")


@restart.preview
async def _restart_preview(ctx: Context, service: str) -> str:
    return _preview(find_service(ctx, service), "restart")


@restart.resume
async def _restart_resume(ctx: Context, service: str) -> Reply:
    return await _resumed(ctx, find_service(ctx, service), "restart")


async def _report(ctx: Context, info: ServiceInfo, want: Health, good: str, bad: str) -> Reply:
    try:
        units = await ctx.deps.services.status(info.units)
    except UnitError as exc:
        raise CommandError(f"systemd did not answer: {esc(exc)}") from None
    health = worst(list(units.values()))
    if health is want:
        return Reply(f"{_ICON[health]} {esc(info.name)} {good}.")
    raise CommandError(f"{esc(info.name)} {bad.format(state=health.label)}.")


LOG_LINES = Arg("lines", Integer(metavar="N", minimum=1, maximum=2000), required=False,
                help="how many lines, 50 by default")  # fmt: skip


@commands.command(
    "logs", "The newest journal lines of a service", args=(SERVICE_ARG, LOG_LINES),
    role=Role.ADMIN,
)  # fmt: skip
async def logs(ctx: Context, service: str, lines: int | None = None) -> Reply:
    info = find_service(ctx, service)
    count = lines or 50
    try:
        found = await ctx.deps.services.logs(info.units, count)
    except UnitError as exc:
        raise CommandError(f"The journal did not answer: {esc(exc)}") from None
    head = f"<b>{esc(info.name)}</b>: the last {len(found)} journal lines"
    if not found:
        return Reply(f"{head}: none.")
    # Log lines are whatever the services wrote: escaped, in a <pre> block. A long answer
    # becomes a file on every transport.
    return Reply(f"{head}\n<pre>{esc(chr(10).join(found))}</pre>", sensitive=True)


# --- enable and disable: the desired state, then a rebuild ---------------------------------------


async def _toggle_preview(ctx: Context, service: str, enable: bool) -> str:
    info = find_service(ctx, service)
    state = await rebuild.read_desired(ctx)
    if state.enabled(info.id) == enable:
        raise CommandError(f"{esc(info.name)} is already {'enabled' if enable else 'disabled'}.")
    text = rebuild.describe_change(state, state.with_service(info.id, enable=enable))
    units = ", ".join(f"<code>{esc(unit)}</code>" for unit in info.units)
    if enable:
        subdomains = ", ".join(esc(sub) for sub in info.subdomains)
        text += f"\nUnits that start: {units}."
        if subdomains:
            text += f"\nIt answers on: {subdomains} (see /dns)."
    else:
        text += f"\nUnits that stop: {units}. Its data stays in place: "
        text += ", ".join(f"<code>{esc(folder)}</code>" for folder in info.folders) or "none"
        text += "."
    return text


async def _toggle(ctx: Context, service: str, enable: bool) -> Reply:
    info = find_service(ctx, service)
    verb = "Enabling" if enable else "Disabling"
    return await rebuild.change_and_switch(
        ctx, f"{verb} {info.name}", lambda state: state.with_service(info.id, enable=enable)
    )


@commands.command("enable", "Enable a service and rebuild", args=(SERVICE_ARG,),
                  role=Role.ADMIN, changes=True, background=True)  # fmt: skip
async def enable(ctx: Context, service: str) -> Reply:
    return await _toggle(ctx, service, True)


@enable.preview
async def _enable_preview(ctx: Context, service: str) -> str:
    return await _toggle_preview(ctx, service, True)


@enable.resume
async def _enable_resume(ctx: Context, service: str) -> Reply:
    return await rebuild.resume(ctx)


@commands.command("disable", "Disable a service and rebuild", args=(SERVICE_ARG,),
                  role=Role.ADMIN, changes=True, background=True, destructive=True)  # fmt: skip
async def disable(ctx: Context, service: str) -> Reply:
    return await _toggle(ctx, service, False)


@disable.preview
async def _disable_preview(ctx: Context, service: str) -> str:
    return await _toggle_preview(ctx, service, False)


@disable.resume
async def _disable_resume(ctx: Context, service: str) -> Reply:
    return await rebuild.resume(ctx)

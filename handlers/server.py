"""The cloud server and the backup bucket: /server, /snapshot, /snapshots, /volumes, /resize,
/power and /storage. Without a provider, each says plainly which setting turns it on."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Arg, Choice, Integer, Role, Word
from providers.server.base import (
    POWER_ACTIONS,
    ServerError,
    ServerInfo,
    Snapshot,
    Volume,
    check_new_volume_size,
)
from providers.storage.base import StorageError

if TYPE_CHECKING:
    from providers.server.base import ServerProvider
    from providers.storage.base import BackupStorage

commands = Registry()
GB = 1000**3
NO_CLOUD = (
    "/{name} needs a cloud provider, and this server has none configured "
    "(<code>STEWARD_SERVER_PROVIDER=hetzner</code> with a token turns it on). Everything else "
    "works without one."
)
NO_BUCKET = (
    "/storage needs Backblaze B2: set <code>STEWARD_B2_KEY_ID</code>, <code>STEWARD_B2_KEY</code> "
    "and <code>STEWARD_B2_BUCKET</code>."
)


def cloud(ctx: Context) -> ServerProvider:
    provider = ctx.deps.cloud
    if provider is None:
        raise CommandError(NO_CLOUD.format(name=esc(ctx.command.name)))
    return provider


def _failed(exc: ServerError | StorageError) -> CommandError:
    return CommandError(esc(exc))


# --- /server -----------------------------------------------------------------------------------


@commands.command("server", "This cloud server: status, type, addresses, traffic, price")
async def server(ctx: Context) -> Reply:
    try:
        info = await cloud(ctx).this_server()
    except ServerError as exc:
        raise _failed(exc) from None
    return Reply(describe_server(info))


def describe_server(info: ServerInfo) -> str:
    icon = {"running": "🟢", "off": "⚪"}.get(info.status, "🟡")
    lines = [
        f"{icon} <b>{esc(info.name)}</b> ({info.id}) {esc(info.status)}",
        f"🖥 {esc(info.server_type)}: {info.cores} cores, {info.memory_gb:g} GB memory, "
        f"{info.disk_gb} GB disk",
        f"📍 {esc(info.city)} ({esc(info.location)})",
        f"🌐 IPv4 {esc(info.ipv4 or 'none')}, IPv6 {esc(info.ipv6 or 'none')}",
    ]
    if info.traffic_used_bytes is not None and info.traffic_included_bytes:
        used = info.traffic_used_bytes / info.traffic_included_bytes * 100
        lines.append(
            f"📶 traffic {info.traffic_used_bytes / GB:.1f} GB of "
            f"{info.traffic_included_bytes / GB / 1000:.0f} TB included ({used:.1f}%)"
        )
    price = f"{info.price_monthly} a month" if info.price_monthly else "price unknown"
    lines.append(f"💶 {esc(price)}")
    lines.append(f"💾 provider backups {'on' if info.backups_enabled else 'off'}")
    protected = [
        what
        for what, on in (("delete", info.delete_protection), ("rebuild", info.rebuild_protection))
        if on
    ]
    lines.append(f"🔒 protection: {', '.join(protected) if protected else 'none'}")
    return "\n".join(lines)


# --- snapshots ----------------------------------------------------------------------------------


@commands.command("snapshot", "Take a snapshot of this server", role=Role.OPERATOR,
                  changes=True, background=True)  # fmt: skip
async def snapshot(ctx: Context) -> Reply:
    provider = cloud(ctx)
    await ctx.progress.update("📸 Taking a snapshot of the server…")
    description = f"steward {ctx.local(ctx.now):%Y-%m-%d %H:%M} by {ctx.command.actor.label}"
    try:
        made = await provider.create_snapshot(description[:120])
    except ServerError as exc:
        raise _failed(exc) from None
    return Reply(f"✅ Snapshot {made.id} taken: {esc(made.description)}.{_cost(made)}")


@snapshot.preview
async def _snapshot_preview(ctx: Context) -> str:
    try:
        estimate = await cloud(ctx).snapshot_cost_estimate()
    except ServerError as exc:
        raise _failed(exc) from None
    return (
        "Takes a snapshot of this server's disk (the server keeps running). It costs at most "
        f"{esc(estimate.new_snapshot_max_monthly)} a month ({esc(estimate.price_per_gb_month)} "
        f"per GB). {estimate.existing_count} snapshots cost "
        f"{esc(estimate.existing_monthly)} a month today."
    )


@snapshot.resume
async def _snapshot_resume(ctx: Context) -> Reply:
    found = await _snapshots(ctx)
    mine = [s for s in found if s.description.startswith("steward ")]
    if mine:
        return Reply(
            f"The bot restarted while the snapshot was taken; the newest is {mine[0].id}, "
            f"{esc(mine[0].description)}. /snapshots lists them."
        )
    raise CommandError("The bot restarted while the snapshot was taken; /snapshots shows it.")


async def _snapshots(ctx: Context) -> list[Snapshot]:
    try:
        return await cloud(ctx).snapshots()
    except ServerError as exc:
        raise _failed(exc) from None


def _cost(found: Snapshot) -> str:
    return f" {found.monthly_cost} a month." if found.monthly_cost is not None else ""


@commands.command("snapshots", "List the server's snapshots")
async def snapshots(ctx: Context) -> Reply:
    found = await _snapshots(ctx)
    if not found:
        return Reply("There are no snapshots. /snapshot takes one.")
    lines = ["<b>Snapshots</b> (newest first)"]
    for item in found[:30]:
        size = f"{item.size_gb:.1f} GB" if item.size_gb is not None else "size pending"
        lines.append(
            f"• <code>{item.id}</code> {_date(ctx, item.created)} {esc(item.description)} — "
            f"{size}{esc(_cost(item))}"
        )
    lines.append("Delete one with <code>/snapshots delete ID</code>.")
    return Reply("\n".join(lines))


SNAPSHOT_ID = Arg("id", Word(metavar="id"))


@commands.command("snapshots delete", "Delete a snapshot", args=(SNAPSHOT_ID,), role=Role.ADMIN,
                  changes=True, destructive=True)  # fmt: skip
async def snapshot_delete(ctx: Context, id: str) -> Reply:
    try:
        await cloud(ctx).delete_snapshot(id)
    except ServerError as exc:
        raise _failed(exc) from None
    return Reply(f"🗑 Snapshot {esc(id)} deleted.")


@snapshot_delete.preview
async def _snapshot_delete_preview(ctx: Context, id: str) -> str:
    found = next((s for s in await _snapshots(ctx) if s.id == id), None)
    if found is None:
        raise CommandError(f"There is no snapshot {esc(id)}; /snapshots lists them.")
    return (
        f"Deletes snapshot {esc(id)} ({_date(ctx, found.created)}, {esc(found.description)}) for "
        f"good.{esc(_cost(found))} saved a month."
    )


def _date(ctx: Context, moment: datetime) -> str:
    return f"{ctx.local(moment):%Y-%m-%d %H:%M}"


# --- volumes --------------------------------------------------------------------------------------


async def _volumes(ctx: Context) -> list[Volume]:
    try:
        return await cloud(ctx).volumes()
    except ServerError as exc:
        raise _failed(exc) from None


@commands.command("volumes", "The cloud volumes: size, how full, price")
async def volumes(ctx: Context) -> Reply:
    found = await _volumes(ctx)
    if not found:
        return Reply("This project has no volumes.")
    lines = ["<b>Volumes</b>"]
    for volume in found:
        usage = await ctx.deps.host.device_usage(volume.linux_device)
        where = (
            f"<code>{esc(usage.mount)}</code> {usage.percent:.0f}% full"
            if usage is not None
            else "not mounted here"
        )
        lines.append(
            f"💽 <b>{esc(volume.name)}</b> {volume.size_gb} GB, {where}, "
            f"{esc(volume.price_monthly)} a month"
        )
    return Reply("\n".join(lines))


VOLUME = Arg("volume", Word(metavar="volume"))
SIZE = Arg("size", Integer(metavar="GB", minimum=1, maximum=10240))


async def _volume(ctx: Context, name: str) -> Volume:
    found = await _volumes(ctx)
    volume = next((v for v in found if v.name == name or str(v.id) == name), None)
    if volume is None:
        known = ", ".join(v.name for v in found) or "none"
        raise CommandError(f"There is no volume {esc(name)}. Volumes: {esc(known)}.")
    return volume


@commands.command("resize", "Grow a volume and its filesystem", args=(VOLUME, SIZE),
                  role=Role.ADMIN, changes=True, background=True, destructive=True)  # fmt: skip
async def resize(ctx: Context, volume: str, size: int) -> Reply:
    found = await _volume(ctx, volume)
    await ctx.progress.update(f"💽 Growing {esc(found.name)} to {size} GB…")
    try:
        grown = await cloud(ctx).resize_volume(str(found.id), size)
    except ServerError as exc:
        raise _failed(exc) from None
    await ctx.progress.update(
        f"💽 {esc(grown.name)} is {grown.size_gb} GB; growing its filesystem…"
    )
    try:
        await ctx.deps.host.grow_filesystem(grown.linux_device)
    except OSError as exc:
        raise CommandError(
            f"{esc(grown.name)} is now {grown.size_gb} GB, but its filesystem could not grow: "
            f"{esc(exc)}. The space is there; growing the filesystem by hand uses it."
        ) from None
    usage = await ctx.deps.host.device_usage(grown.linux_device)
    full = f", {usage.percent:.0f}% full" if usage is not None else ""
    return Reply(
        f"✅ {esc(grown.name)} is {grown.size_gb} GB{full}; it costs "
        f"{esc(grown.price_monthly)} a month."
    )


@resize.preview
async def _resize_preview(ctx: Context, volume: str, size: int) -> str:
    found = await _volume(ctx, volume)
    try:
        if size <= found.size_gb:
            check_new_volume_size(found, size)  # the provider's own sentence; nothing is sent
        price = await cloud(ctx).volume_price(size)
    except ServerError as exc:
        raise _failed(exc) from None
    return (
        f"Grows volume {esc(found.name)} from {found.size_gb} GB to <b>{size} GB</b>, then its "
        f"filesystem. It then costs {esc(price)} a month (now {esc(found.price_monthly)}). "
        "A volume cannot shrink again."
    )


# --- power ----------------------------------------------------------------------------------------

POWER = Arg("action", Choice(POWER_ACTIONS))
OTHER = Arg("server", Word(metavar="server"))


@commands.command("power", "Reset, power off or on another server of the project",
                  args=(OTHER, POWER), role=Role.ADMIN, changes=True, two_person=True,
                  background=True, destructive=True)  # fmt: skip
async def power(ctx: Context, server: str, action: str) -> Reply:
    provider = cloud(ctx)
    try:
        target = await provider.server(server)
        await provider.power(str(target.id), action)  # type: ignore[arg-type]
    except ServerError as exc:
        raise _failed(exc) from None
    return Reply(f"✅ {esc(target.name)}: {esc(action)} done.")


@power.preview
async def _power_preview(ctx: Context, server: str, action: str) -> str:
    provider = cloud(ctx)
    try:
        target = await provider.server(server)
        this = await provider.this_server()
    except ServerError as exc:
        raise _failed(exc) from None
    if target.id == this.id:
        raise CommandError("That is this server, the one the bot runs on. Use /reboot for it.")
    effect = {
        "reset": "cuts its power and starts it again at once, like a reset button",
        "poweroff": "cuts its power; it stays off until powered on",
        "poweron": "starts it",
    }[action]
    return f"{esc(action)} {esc(target.name)} ({target.id}, now {esc(target.status)}): {effect}."


# --- /storage -------------------------------------------------------------------------------------


def bucket(ctx: Context) -> BackupStorage:
    if ctx.deps.storage is None:
        raise CommandError(NO_BUCKET)
    return ctx.deps.storage


@commands.command("storage", "The backup bucket: size, files, monthly cost, key check")
async def storage(ctx: Context) -> Reply:
    store = bucket(ctx)
    try:
        info = await store.bucket_info()
        check = await store.check_key()
    except StorageError as exc:
        raise _failed(exc) from None
    lines = [
        f"🪣 <b>{esc(info.name)}</b>: {info.total_bytes / GB:.2f} GB in {info.file_count} files "
        f"({info.version_count} versions)",
        f"💶 about {info.monthly_cost:.2f} {esc(info.currency)} a month",
    ]
    if check.warnings:
        lines.append("⚠️ The backup key is too powerful:")
        lines.extend(f"• {esc(warning)}" for warning in check.warnings)
    else:
        keep = check.keep_hidden_days
        lines.append(f"✅ The key is limited to this bucket and cannot delete; deleted files stay "
                     f"{keep} days.")  # fmt: skip
    return Reply("\n".join(lines))

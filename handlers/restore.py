"""/restore: a service's folders and databases back from a snapshot.

The preview names the snapshot's time and size and what stops; the steps (safety snapshot,
stop, staging with --verify, swap, databases, start) run in ``providers.backup.restore``,
which puts the old data back on any failure. Two-person approval comes from ``STEWARD_TWO_PERSON``.
"""

from __future__ import annotations

from handlers.backups import MB, data_jobs, engine
from handlers.core.context import CommandError, Context
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import SERVICE, Arg, Role, Word
from providers.backup.base import BackupError, BackupReason, RestoreError, RestorePlan, Snapshot
from providers.backup.restore import plan_restore
from providers.host.catalogue import ServiceInfo

commands = Registry()
WHICH = Arg(
    "snapshot",
    Word(metavar="snapshot", pattern=r"latest|[0-9a-f]{8,64}"),
    help="a snapshot id from /backups, or latest",
)


def _service(ctx: Context, service: str) -> ServiceInfo:
    info = ctx.deps.catalogue.get(service)
    if info is None or not info.folders:
        known = ", ".join(sid for sid in ctx.deps.catalogue if ctx.deps.catalogue[sid].folders)
        raise CommandError(f"Unknown service {esc(service)}. Backed up: {esc(known)}.")
    return info


async def _snapshot(ctx: Context, info: ServiceInfo, which: str) -> Snapshot:
    try:
        found = await engine(ctx).snapshots(info.id)
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    # A safety snapshot is the data just before a restore: never "latest" by accident.
    usable = [snap for snap in found if snap.reason is not BackupReason.PRE_RESTORE]
    if which == "latest":
        if not usable:
            raise CommandError(f"{esc(info.name)} has no snapshot yet; /backup takes one.")
        return max(usable, key=lambda snap: snap.time)
    matches = [snap for snap in found if snap.id.startswith(which) or snap.short_id == which]
    if len(matches) != 1:
        raise CommandError(
            f"No single snapshot of {esc(info.name)} matches {esc(which)}; "
            f"<code>/backups {esc(info.id)}</code> lists them."
        )
    return matches[0]


def _shown_key(ctx: Context, service: str) -> str:
    chat, actor = ctx.command.chat, ctx.command.actor
    return f"restore:{chat.transport}:{chat.chat_id}:{actor.key}:{service}"


async def _plan(
    ctx: Context, service: str, which: str, *, preview: bool = False
) -> tuple[ServiceInfo, Snapshot, RestorePlan]:
    info = _service(ctx, service)
    if which == "latest" and not preview:
        # "latest" is the snapshot the confirmation showed, even if a backup ran since.
        shown = await ctx.deps.notes.get(_shown_key(ctx, info.id))
        if shown is None:
            raise CommandError("Send /restore again: which snapshot was shown is not known.")
        which = shown
    snap = await _snapshot(ctx, info, which)
    if preview:
        await ctx.deps.notes.set(_shown_key(ctx, info.id), snap.id, ctx.now)
    dumps = ctx.deps.dumps
    folder = str(dumps.folder(info.id)) if dumps is not None else None
    try:
        plan = plan_restore(info, snap, ctx.deps.catalogue, folder)
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    return info, snap, plan


@commands.command("restore", "Put a service's data back from a snapshot",
                  args=(Arg("service", SERVICE), WHICH), role=Role.ADMIN, changes=True,
                  background=True, destructive=True)  # fmt: skip
async def restore(ctx: Context, service: str, snapshot: str) -> Reply:
    info, snap, plan = await _plan(ctx, service, snapshot)

    async def step(text: str) -> None:
        await ctx.progress.update(f"♻️ Restoring {esc(info.name)}: {esc(text)}…")

    try:
        done = await data_jobs(ctx).restore(plan, step)
    except RestoreError as exc:
        safety = (
            f"\nThe data as it was before is also in snapshot "
            f"<code>{esc(exc.safety_snapshot)}</code>."
            if exc.safety_snapshot
            else ""
        )
        if exc.kept_old:
            raise CommandError(
                f"The restore of {esc(info.name)} failed: {esc(exc)}\n"
                f"The old data is back in place and the service is started again.{safety}"
            ) from None
        raise CommandError(
            f"The restore of {esc(info.name)} failed: {esc(exc)}\n"
            f"⚠️ The old data could not all be put back; it is kept beside each folder as "
            f"<code>.NAME.steward-old</code>.{safety}"
        ) from None
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    lines = [
        f"✅ {esc(info.name)} is restored from snapshot <code>{esc(snap.short_id)}</code> "
        f"of {ctx.local(snap.time):%Y-%m-%d %H:%M}: {done.files} files, "
        f"{done.bytes / MB:.1f} MB, verified.",
    ]
    if done.databases:
        lines.append(f"Databases loaded: {esc(', '.join(done.databases))}.")
    if done.safety_snapshot:
        lines.append(
            f"The data as it was just before is in snapshot <code>{esc(done.safety_snapshot)}"
            "</code>; <code>/restore</code> it to undo."
        )
    return Reply("\n".join(lines))


@restore.preview
async def _restore_preview(ctx: Context, service: str, snapshot: str) -> str:
    info, snap, plan = await _plan(ctx, service, snapshot, preview=True)
    size = f", {snap.size_bytes / MB:.1f} MB" if snap.size_bytes is not None else ""
    reason = snap.reason.value if snap.reason is not None else "untagged"
    lines = [
        f"Puts {esc(info.name)}'s data back as it was at "
        f"<b>{ctx.local(snap.time):%Y-%m-%d %H:%M}</b> "
        f"(snapshot <code>{esc(snap.short_id)}</code>, {esc(reason)}{size}).",
        "Folders: " + ", ".join(f"<code>{esc(folder)}</code>" for folder in plan.folders),
    ]
    if plan.databases:
        lines.append(f"Databases: {esc(', '.join(plan.databases))}.")
    if plan.units:
        lines.append(f"Stops {esc(', '.join(plan.units))} during the restore.")
    lines.append(
        "A safety snapshot of today's data comes first; on any failure the old data goes back."
    )
    return "\n".join(lines)


@restore.resume
async def _restore_resume(ctx: Context, service: str, snapshot: str) -> Reply:
    async def step(text: str) -> None:
        await ctx.progress.update(f"♻️ {esc(text)}…")

    restored, outcome = await data_jobs(ctx).recover(_service(ctx, service).id, step)
    text = f"The bot restarted during the restore of {esc(service)}. {esc(outcome)}"
    if not restored:
        raise CommandError(text)
    return Reply(f"✅ {text}")

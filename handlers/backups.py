"""Backups with restic: /backup, /backups and /forget, and the scheduled backup.

Each service's catalogue folders are one snapshot, tagged with the service and the reason
(scheduled, manual, pre-restore). Progress is one message, edited in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.core.context import CommandError, Context, Deps
from handlers.core.messages import Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import SERVICE, Arg, AskFirst, Role, Word
from handlers.repository import create, missing, offer_init, what_init_does
from providers.backup.base import (
    BackupError,
    BackupProgress,
    BackupReason,
    RetentionPolicy,
    Snapshot,
)
from providers.host.catalogue import ServiceInfo

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine, DataJobs

commands = Registry()
NO_BACKUPS = (
    "Backups are not set up: set <code>STEWARD_RESTIC_REPOSITORY</code> and "
    "<code>STEWARD_RESTIC_PASSWORD_FILE</code>."
)
MB = 1000**2


def engine(ctx: Context) -> BackupEngine:
    if ctx.deps.backups is None:
        raise CommandError(NO_BACKUPS)
    return ctx.deps.backups


def data_jobs(ctx: Context) -> DataJobs:
    engine(ctx)  # says how to set backups up when they are not
    if ctx.deps.data_jobs is None:
        raise CommandError("Backups of service data are not set up on this server.")
    return ctx.deps.data_jobs


def backed_up(deps: Deps) -> list[ServiceInfo]:
    """The services with folders to back up, in catalogue order."""
    return [deps.catalogue[sid] for sid in deps.catalogue if deps.catalogue[sid].folders]


def _targets(ctx: Context, service: str | None) -> list[ServiceInfo]:
    if service in (None, "all"):
        found = backed_up(ctx.deps)
        if not found:
            raise CommandError("No service in the catalogue has folders to back up.")
        return found
    info = ctx.deps.catalogue.get(service or "")
    if info is None:
        known = ", ".join(s.id for s in backed_up(ctx.deps))
        raise CommandError(f"Unknown service {esc(service)}. Backed up: {esc(known)}.")
    if not info.folders:
        raise CommandError(f"{esc(info.name)} has no folders to back up.")
    return [info]


@dataclass
class _Shown:
    """Progress of a run over several services, for one edited message."""

    ctx: Context
    label: str
    index: int
    total: int

    async def __call__(self, progress: BackupProgress) -> None:
        left = (
            f", about {progress.seconds_remaining:.0f} s left"
            if progress.seconds_remaining is not None
            else ""
        )
        await self.ctx.progress.update(
            f"💾 Backing up {esc(self.label)} ({self.index}/{self.total}): "
            f"{progress.percent:.0f}%, {progress.files_done}/{progress.files_total} files, "
            f"{progress.bytes_done / MB:.1f} of {progress.bytes_total / MB:.1f} MB{left}"
        )


async def run_backups(
    ctx: Context, services: list[ServiceInfo], reason: BackupReason
) -> tuple[list[str], list[str]]:
    """Back up each service in turn; one failure does not stop the others."""
    jobs = data_jobs(ctx)
    done, failed = [], []
    for index, info in enumerate(services, 1):
        started = time.monotonic()
        shown = _Shown(ctx, info.name, index, len(services))
        if info.databases and ctx.deps.dumps is not None:
            await ctx.progress.update(f"💾 Dumping the databases of {esc(info.name)}")
        try:
            result = await jobs.backup(info, reason, shown)
        except BackupError as exc:
            failed.append(f"❌ {esc(info.name)}: {esc(exc)}")
            continue
        seconds = time.monotonic() - started
        note = _undumped(ctx.deps, info)
        done.append(
            f"✅ {esc(info.name)}: snapshot <code>{esc(result.snapshot_id)}</code>, "
            f"{result.files_new} new and {result.files_changed} changed files, "
            f"{result.bytes_added / MB:.1f} MB added, {seconds:.0f} s{note}"
        )
    return done, failed


def _undumped(deps: Deps, info: ServiceInfo) -> str:
    """A snapshot of a service's folders without its database is not the whole service."""
    if not info.databases or deps.dumps is not None or deps.demo is not None:
        return ""
    return (
        f"\n⚠️ Its database ({esc(', '.join(info.databases))}) is not in it: set "
        "<code>STEWARD_POSTGRES_HOST</code> so that Steward dumps it."
    )


SERVICE_OR_ALL = Arg("service", SERVICE, required=False, help="a service id, or all (default)")


@commands.command("backup", "Back up a service, or all of them, now", args=(SERVICE_OR_ALL,),
                  role=Role.OPERATOR, changes=True, background=True, confirm=False)  # fmt: skip
async def backup(ctx: Context, service: str | None = None) -> Reply:
    targets = _targets(ctx, service)
    # The preview said so when there was none: this confirmation is the one that makes it.
    made = [await create(ctx, engine(ctx))] if await missing(engine(ctx)) else []
    done, failed = await run_backups(ctx, targets, BackupReason.MANUAL)
    if failed and not done:
        raise CommandError("\n".join([*made, "The backup failed:", *failed]))
    return Reply("\n".join([*made, "<b>Backup</b>", *done, *failed]))


@backup.preview
async def _backup_preview(ctx: Context, service: str | None = None) -> str:
    engine(ctx)
    targets = _targets(ctx, service)
    folders = sum(len(info.folders) for info in targets)
    names = ", ".join(esc(info.name) for info in targets)
    text = f"Backs up {names} now: {folders} folder(s), as manual snapshots."
    if await missing(engine(ctx)):
        # Creating the repository is more than a backup: that one asks first.
        return AskFirst(
            f"{text}\nThere is no backup repository yet, so first: {what_init_does(engine(ctx))}"
        )
    return text


@backup.resume
async def _backup_resume(ctx: Context, service: str | None = None) -> Reply:
    raise CommandError(
        "The bot restarted during the backup. restic keeps what it had written; /backups "
        "shows which snapshots exist, and /backup starts again."
    )


@commands.command("backups", "List the backup snapshots", args=(SERVICE_OR_ALL,))
async def backups(ctx: Context, service: str | None = None) -> Reply:
    wanted = None if service in (None, "all") else _targets(ctx, service)[0].id
    try:
        found = await engine(ctx).snapshots(wanted)
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    if not found:
        return Reply("There are no snapshots yet. /backup takes one.")
    found.sort(key=lambda s: s.time, reverse=True)
    lines = ["<b>Snapshots</b> (newest first)"]
    for snap in found[:30]:
        lines.append(_snapshot_line(ctx, snap))
    if len(found) > 30:
        lines.append(f"… and {len(found) - 30} older ones.")
    return Reply("\n".join(lines))


def _snapshot_line(ctx: Context, snap: Snapshot) -> str:
    size = f", {snap.size_bytes / MB:.1f} MB" if snap.size_bytes is not None else ""
    reason = snap.reason.value if snap.reason is not None else "untagged"
    return (
        f"• <code>{esc(snap.short_id)}</code> {ctx.local(snap.time):%Y-%m-%d %H:%M} "
        f"{esc(snap.service_id or '?')} ({esc(reason)}{size})"
    )


SNAPSHOT = Arg("snapshot", Word(metavar="snapshot", pattern=r"[0-9a-f]{8,64}"))


async def _find(ctx: Context, snapshot: str) -> Snapshot:
    try:
        found = await engine(ctx).snapshots()
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    matches = [s for s in found if s.id.startswith(snapshot) or s.short_id == snapshot]
    if len(matches) != 1:
        raise CommandError(f"No single snapshot matches {esc(snapshot)}; /backups lists them.")
    return matches[0]


@commands.command("forget", "Forget a backup snapshot", args=(SNAPSHOT,), role=Role.ADMIN,
                  changes=True, destructive=True)  # fmt: skip
async def forget(ctx: Context, snapshot: str) -> Reply:
    found = await _find(ctx, snapshot)
    try:
        await engine(ctx).forget(found.id)
    except BackupError as exc:
        raise CommandError(esc(exc)) from None
    return Reply(
        f"🗑 Snapshot <code>{esc(found.short_id)}</code> is forgotten; its space comes back at "
        "the next pruning."
    )


@forget.preview
async def _forget_preview(ctx: Context, snapshot: str) -> str:
    found = await _find(ctx, snapshot)
    return f"Forgets this snapshot for good:\n{_snapshot_line(ctx, found)}"


async def scheduled_backup(deps: Deps, ctx: Context, policy: RetentionPolicy) -> Reply:
    """The scheduled run: every service, then the retention policy on scheduled snapshots."""
    if await missing(engine(ctx)):
        return offer_init(engine(ctx), "The scheduled backup did not run")
    done, failed = await run_backups(ctx, backed_up(deps), BackupReason.SCHEDULED)
    if deps.self_snapshot is not None:
        # After the services: its database then holds the audit rows of this run too.
        try:
            done.append(await own_snapshot(deps, BackupReason.SCHEDULED))
        except BackupError as exc:
            failed.append(f"❌ Steward itself: {esc(exc)}")
    state = "failed " + ", ".join(line.split(":")[0][2:] for line in failed) if failed else "ok"
    await deps.notes.set(LAST_RUN, f"{ctx.now.isoformat()} {state}", ctx.now)
    lines = ["<b>Scheduled backup</b>", *done, *failed]
    if not policy.empty:
        try:
            kept = await engine(ctx).apply_retention(policy)
            lines.append(f"🧹 retention: {len(kept.removed)} old snapshot(s) forgotten and pruned")
        except BackupError as exc:
            failed.append(f"retention: {exc}")
            lines.append(f"❌ retention: {esc(exc)}")
    return Reply("\n".join(lines), silent=not failed)


async def own_snapshot(deps: Deps, reason: BackupReason) -> str:
    """Steward's own snapshot: its database, desired state, /etc/nixos, DKIM keys, catalogue."""
    assert deps.self_snapshot is not None  # noqa: S101 - the callers check
    result = await deps.self_snapshot.take(reason)
    return (
        f"✅ Steward itself: snapshot <code>{esc(result.snapshot_id[:8])}</code> "
        "(database, desired state, /etc/nixos, DKIM keys, catalogue)"
    )


async def last_backups(deps: Deps, now: datetime) -> list[str]:
    """For the daily report: the age of each service's newest snapshot."""
    if deps.backups is None:
        return []
    try:
        found = await deps.backups.snapshots()
    except BackupError as exc:
        return [f"❌ backups: {esc(exc)}"]
    newest: dict[str, datetime] = {}
    for snap in found:
        sid = snap.service_id
        if sid is not None and (sid not in newest or snap.time > newest[sid]):
            newest[sid] = snap.time
    lines = []
    for info in backed_up(deps):
        when = newest.get(info.id)
        if when is None:
            lines.append(f"⚠️ {esc(info.name)}: never backed up")
            continue
        hours = max(0.0, (now - when).total_seconds() / 3600)
        mark = "✅" if hours < 48 else "⚠️"
        lines.append(f"{mark} {esc(info.name)}: last backup {hours:.0f} h ago")
    return lines


# --- checks and drills ---------------------------------------------------------------------

LAST_RUN = "backup:last-run"
CHECKED = "backup:last-check"
DRILLED = "backup:last-drill"


async def weekly_check(deps: Deps, now: datetime) -> Reply:
    """``restic check`` reading a subset of the data; loud when it finds a problem."""
    assert deps.backups is not None  # noqa: S101 - scheduled only with backups
    try:
        result = await deps.backups.check("5%")
    except BackupError as exc:
        ok, text = False, f"❌ <b>Backup check failed</b>: {esc(exc)}"
    else:
        ok = result.ok
        problems = "\n".join(esc(p) for p in result.problems[:10])
        text = (
            f"✅ Backup check: the repository is sound ({esc(result.read_data_subset)} of the "
            "data read)."
            if ok
            else f"❌ <b>Backup check found damage</b>:\n<pre>{problems}</pre>"
        )
    await deps.notes.set(CHECKED, f"{now.isoformat()} {'ok' if ok else 'failed'}", now)
    return Reply(text, silent=ok)


async def monthly_drill(deps: Deps, now: datetime, tmp_dir: Path) -> Reply:
    """Restore a sample of files to a temporary folder and compare their checksums."""
    assert deps.backups is not None  # noqa: S101 - scheduled only with backups
    try:
        result = await deps.backups.drill(20, tmp_dir)
    except BackupError as exc:
        ok, text = False, f"❌ <b>Restore drill failed</b>: {esc(exc)}"
    else:
        ok = result.ok
        text = (
            f"✅ Restore drill: {result.files_compared} files restored from "
            f"<code>{esc(result.snapshot_id[:8])}</code> match."
            if ok
            else f"❌ <b>Restore drill</b>: {len(result.mismatches)} of {result.files_compared} "
            f"restored files differ: {esc(', '.join(result.mismatches[:5]))}"
        )
    await deps.notes.set(DRILLED, f"{now.isoformat()} {'ok' if ok else 'failed'}", now)
    return Reply(text, silent=ok)


async def check_lines(deps: Deps) -> list[str]:
    """For the daily report: the last check and drill, when there were any."""
    lines = []
    for key, what in ((CHECKED, "check"), (DRILLED, "restore drill")):
        raw = await deps.notes.get(key)
        if raw:
            when, _, state = raw.partition(" ")
            mark = "✅" if state == "ok" else "❌"
            lines.append(f"{mark} last backup {what} {when[:10]}: {state}")
    return lines


async def backup_readings(deps: Deps, now: datetime) -> list[tuple[str, None, float, str]]:
    """For the alert check: a backup older than two schedule periods, and the last
    scheduled backup, check and drill when they failed. Levels, not thresholds."""
    if deps.backups is None:
        return []
    found: list[tuple[str, None, float, str]] = []
    period = _period_hours(deps)
    try:
        snapshots = await deps.backups.snapshots()
    except BackupError as exc:
        return [("backup:repository", None, 2.0, f"the backup repository: {exc}")]
    newest: dict[str, datetime] = {}
    for snap in snapshots:
        sid = snap.service_id
        if sid is not None and (sid not in newest or snap.time > newest[sid]):
            newest[sid] = snap.time
    for info in backed_up(deps):
        when = newest.get(info.id)
        if when is None:
            continue  # never backed up yet: the first scheduled run says how it went
        hours = (now - when).total_seconds() / 3600
        level = 1.0 if hours > 2 * period else 0.0
        found.append((f"backup:{info.id}", None, level,
                      f"the last backup of {info.name} is {hours:.0f} h old"))  # fmt: skip
    for key, what, bad in ((LAST_RUN, "scheduled backup", 1.0), (CHECKED, "backup check", 2.0),
                           (DRILLED, "restore drill", 2.0)):  # fmt: skip
        raw = await deps.notes.get(key)
        if raw:
            state = raw.partition(" ")[2]
            failed = state != "ok"
            found.append((key, None, bad if failed else 0.0,
                          f"the last {what} {'failed' if failed else 'went well'}"))  # fmt: skip
    return found


def _period_hours(deps: Deps) -> float:
    when = "daily"
    if deps.schedules is not None:
        when = next((w for name, w, _ in deps.schedules.planned() if name == "backup"), when)
    return {"weekly": 168.0, "monthly": 744.0}.get(when.split()[0], 24.0)

"""``steward recover``: a freshly installed server back to where the lost one was.

Given the repository and its password (the usual STEWARD_RESTIC_* settings), it

1. restores Steward's own snapshot (the newest, or ``--snapshot``): the database, the desired
   state, the catalogue, /etc/nixos and the DKIM keys, each into its place atomically;
2. offers the services' snapshots that belong with it: for each service of the recovered
   catalogue, its newest snapshot taken within an hour of Steward's own, as one set;
3. after a ``yes`` on the terminal (or ``--yes``), restores them through the same path as
   ``/restore``: in this process, or with STEWARD_BACKUP_UNITS=1 (NixOS) in the root unit
   ``steward-restore-foreign@<service>:<id>``. These snapshots were taken by the lost server,
   so this server's ledger does not know them and ``steward-restore@`` would refuse them: the
   admin chose them here, as root, which is what authorises a foreign snapshot (polkit never
   lets the bot start that unit). In unit mode recover therefore runs as root only, and
   restores a service only once the root units' catalogue knows it (after a rebuild from the
   recovered /etc/nixos; ``--services`` then restores the set without Steward's part again).

Run it with the bot stopped. Only ``steward recover`` imports this module.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.app import _backups, _catalogue, _dumps
from bot.config import ConfigError, Settings
from bot.storage.database import Database
from bot.storage.stores import SqlAuditLog
from handlers.core.messages import Actor
from handlers.core.records import AuditEntry, AuditEvent
from providers.backup.base import SELF, BackupError, BackupReason, Snapshot
from providers.backup.datajobs import LocalDataJobs, UnitDataJobs
from providers.backup.restore import Restorer, plan_restore
from providers.backup.selfrestore import OwnRestore
from providers.backup.selfsnapshot import parse_database
from providers.host.catalogue import ServiceCatalogue, ServiceInfo
from providers.host.systemd import SystemctlServiceManager

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine, DataJobs

WINDOW = timedelta(hours=1)
RECOVERED_CATALOGUE = "recovered-catalogue.json"


NOT_ROOT = (
    "steward recover: with STEWARD_BACKUP_UNITS=1 it restores the old server's snapshots "
    "through steward-restore-foreign@, which only root may start, and writes /etc/nixos: run "
    "it as root (sudo steward recover). Nothing was changed."
)


def recover(
    settings: Settings,
    *,
    yes: bool,
    snapshot: str | None = None,
    services_only: bool = False,
    answer: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> int:
    if settings.backup_units and os.geteuid() != 0:
        print(NOT_ROOT, file=sys.stderr)
        return 2
    # Root's own restic cache in unit mode: never a root-owned folder in the bot's state.
    backups = _backups(settings, settings.work_dir / "cache" if settings.backup_units else None)
    if backups is None:
        raise ConfigError("STEWARD_RESTIC_REPOSITORY (or its _FILE twin) is not set")
    try:
        work = _recover(settings, backups, yes=yes, wanted=snapshot, services_only=services_only,
                        answer=answer, out=out)  # fmt: skip
        return asyncio.run(work)
    except BackupError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 1


async def _recover(
    settings: Settings,
    backups: BackupEngine,
    *,
    yes: bool,
    wanted: str | None,
    services_only: bool,
    answer: Callable[[str], str],
    out: TextIO,
) -> int:
    every = await backups.snapshots()
    own = _own_snapshot(every, wanted)
    print(f"Steward's own snapshot {own.short_id}, taken {own.time:%Y-%m-%d %H:%M} UTC on "
          f"{own.hostname}.", file=out)  # fmt: skip
    if services_only:
        catalogue = ServiceCatalogue.load(_recovered_catalogue(settings))
    else:
        catalogue = await _restore_own(settings, backups, own, out)
        await _audit(settings, "recover", (own.short_id,), "Steward's own snapshot restored")
    offered = consistent_set(every, own, catalogue)
    if not offered:
        print("No service has a snapshot within an hour of it: nothing more to restore.", file=out)
        return 0
    print("The services' snapshots taken with it, as one set:", file=out)
    for info, snap in offered:
        print(f"  {info.id:<16} {snap.short_id}  {snap.time:%Y-%m-%d %H:%M} UTC  "
              f"{', '.join(f for f in info.folders if f in snap.paths)}", file=out)  # fmt: skip
    if not yes and answer("Restore these? Type yes: ").strip().lower() != "yes":
        print("The services' data was not restored.", file=out)
        return 1
    return await _restore_services(settings, backups, catalogue, offered, out, own=own)


def _own_snapshot(every: Sequence[Snapshot], wanted: str | None) -> Snapshot:
    own = [s for s in every if s.service_id == SELF]
    if wanted is not None:
        own = [s for s in own if s.id.startswith(wanted) or s.short_id == wanted]
    if not own:
        what = f"matching {wanted}" if wanted else "in this repository"
        raise BackupError(f"There is no snapshot of Steward itself {what}.")
    return max(own, key=lambda s: s.time)


def consistent_set(
    every: Sequence[Snapshot], own: Snapshot, catalogue: ServiceCatalogue
) -> list[tuple[ServiceInfo, Snapshot]]:
    """For each service with folders, its newest snapshot within an hour of Steward's own
    (before or after it); a pre-restore safety snapshot is never one of a set."""
    found = []
    for sid in catalogue:
        info = catalogue[sid]
        near = [s for s in every if s.service_id == sid and abs(s.time - own.time) <= WINDOW
                and s.reason is not BackupReason.PRE_RESTORE]  # fmt: skip
        if info.folders and near:
            found.append((info, max(near, key=lambda s: s.time)))
    return found


async def _restore_own(
    settings: Settings, backups: BackupEngine, own: Snapshot, out: TextIO
) -> ServiceCatalogue:
    state = settings.state_dir
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    parts = OwnRestore(backups, own, state)
    manifest = await parts.manifest()
    present: list[str] = list(manifest.get("parts", []))
    where = await parts.database(settings.database, settings.postgres_user, present)
    print(f"  database → {where}", file=out)
    desired = settings.desired_state or state / "desired-state.json"
    if "desired-state.json" in present:
        await parts.file("desired-state.json", desired)
        print(f"  desired state → {desired}", file=out)
    catalogue_file = _catalogue_place(settings)
    if "catalogue.json" in present:
        await parts.file("catalogue.json", catalogue_file)
        print(f"  catalogue → {catalogue_file}", file=out)
    elif settings.catalogue is None:
        raise BackupError("The snapshot holds no catalogue, and STEWARD_CATALOGUE is not set.")
    else:
        catalogue_file = settings.catalogue
    for part, folder in (("nixos", settings.nixos_config_dir), ("dkim", _dkim_dir(settings))):
        if part in present and folder is not None:
            aside = await parts.folder(part, folder)
            kept = f" (what was there is now {aside})" if aside is not None else ""
            print(f"  {part} → {folder}{kept}", file=out)
        elif part in present:
            print(f"  {part}: not restored, no folder for it is configured here", file=out)
    return ServiceCatalogue.load(catalogue_file)


def _recovered_catalogue(settings: Settings) -> Path:
    recovered = settings.state_dir / RECOVERED_CATALOGUE
    if recovered.is_file():
        return recovered
    if settings.catalogue is None:
        raise BackupError("There is no recovered catalogue: run steward recover without "
                          "--services first.")  # fmt: skip
    return settings.catalogue


def _catalogue_place(settings: Settings) -> Path:
    """On NixOS the module writes the catalogue (a link into the store), from the restored
    /etc/nixos at the next rebuild: the recovered one goes beside the database."""
    configured = settings.catalogue
    if configured is not None and not configured.is_symlink():
        return configured
    return settings.state_dir / RECOVERED_CATALOGUE


def _dkim_dir(settings: Settings) -> Path | None:
    return settings.dkim_file.parent if settings.dkim_file is not None else None


async def _restore_services(
    settings: Settings,
    backups: BackupEngine,
    catalogue: ServiceCatalogue,
    offered: list[tuple[ServiceInfo, Snapshot]],
    out: TextIO,
    *,
    own: Snapshot,
) -> int:
    jobs = _data_jobs(settings, backups)
    dumps = _dumps(settings)
    known = _catalogue(settings) if settings.backup_units else catalogue
    failed = 0
    for info, snap in offered:
        if known.get(info.id) != info:
            failed += 1
            print(f"✗ {info.id}: this server's root units do not know it as the old server did "
                  "yet. Rebuild from the recovered /etc/nixos (nixos-rebuild switch), then: "
                  f"steward recover --services --snapshot {own.short_id}", file=out)  # fmt: skip
            continue
        dump_folder = str(dumps.folder(info.id)) if dumps is not None else None
        plan = plan_restore(info, snap, catalogue, dump_folder)

        async def step(text: str, name: str = info.id) -> None:
            print(f"  {name}: {text}", file=out)

        try:
            done = await jobs.restore(plan, step)
        except BackupError as exc:
            failed += 1
            print(f"✗ {info.id}: {exc}", file=out)
            await _audit(settings, f"recover {info.id}", (snap.short_id,), f"failed: {exc}")
            continue
        print(f"✓ {info.id}: {done.files} files put back, verified.", file=out)
        await _audit(settings, f"recover {info.id}", (snap.short_id,), "restored")
    return 1 if failed else 0


def _data_jobs(settings: Settings, backups: BackupEngine) -> DataJobs:
    if settings.backup_units:
        return UnitDataJobs(settings.work_dir / "jobs", foreign=True)
    restorer = Restorer(backups, SystemctlServiceManager(), settings.work_dir / "restore",
                        dumps=_dumps(settings))  # fmt: skip
    return LocalDataJobs(backups, restorer, _dumps(settings))


async def _audit(settings: Settings, command: str, args: tuple[str, ...], result: str) -> None:
    """Into the recovered database, after the rows of the old server."""
    db = Database(settings.database)
    try:
        audit = SqlAuditLog(db)
        name = getpass.getuser()
        actor = Actor("console", name, f"{name} (shell)")
        entry = AuditEntry(datetime.now(UTC), AuditEvent.OUTCOME, actor, None, command, args,
                           result=result)  # fmt: skip
        await audit.record(entry)
        await audit.flush()
    finally:
        db.dispose()
    await asyncio.to_thread(_give_back, settings)


def _give_back(settings: Settings) -> None:
    """Root wrote the audit rows: a SQLite file (or journal) it left stays the bot's."""
    database = parse_database(settings.database)
    if os.geteuid() != 0 or database.path is None:
        return
    path = database.path
    owner = path.parent.stat()
    for name in (path, *(Path(f"{path}{end}") for end in ("-wal", "-shm", "-journal"))):
        if name.exists() and not name.is_symlink():
            os.lchown(name, owner.st_uid, owner.st_gid)

"""``steward worker backup|restore SERVICE:ARG``: what the root units run.

``steward-backup@nextcloud:manual.service`` runs ``steward worker backup nextcloud:manual``;
``steward-restore@nextcloud:<snapshot id>.service`` restores that snapshot, and
``steward-restore@nextcloud:recover.service`` puts right a restore that was cut short. The
worker trusts nothing it is given but a service id it finds in the catalogue (from the Nix
store) and a reason or snapshot id of the right form: what to back up, which folders to
restore and which units to stop come from the catalogue and the snapshot itself.

Which snapshot it restores, it trusts only when root took it: each snapshot a worker takes is
recorded with its tree hash (``providers.backup.snapshot_ledger``), and a restore of any other is
refused unless an admin passes ``--foreign`` from a root shell
(``steward-restore-foreign@<service>:<snapshot>.service``, which polkit does not grant the bot).

Progress and the outcome go to ``STEWARD_WORKER_DIR/jobs/<service>.json``, a folder only root
writes and the bot reads (``providers.backup.datajobs.UnitDataJobs``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.app import _backups, _catalogue, _dumps, self_sources
from bot.config import Settings
from providers.backup.base import SELF, BackupError, BackupProgress, BackupReason, RestoreError
from providers.backup.datajobs import (
    FOREIGN_RESTORE,
    INSTANCE,
    RECOVER,
    SELF_INSTANCE,
    LocalDataJobs,
    StatusFile,
    result_to_json,
    snapshot_arg,
)
from providers.backup.restore import Restorer, plan_restore
from providers.backup.selfsnapshot import LocalSelfSnapshot
from providers.backup.snapshot_ledger import SnapshotLedger
from providers.host.systemd import SystemctlServiceManager

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine

log = logging.getLogger("steward.worker")
REASONS = (BackupReason.MANUAL, BackupReason.SCHEDULED)
SELF_REASONS = (*REASONS, BackupReason.PRE_UPGRADE)


def _work_self(settings: Settings, arg: str) -> int:
    """Steward's own snapshot, ``steward-backup@steward:<reason>``: the paths come from the
    module's environment (the database URL, desired state, catalogue, /etc/nixos, the DKIM
    folder), nothing from the instance but the reason."""
    status = StatusFile(settings.work_dir / "jobs", SELF, f"steward-backup@{SELF}:{arg}.service")
    status.write(state="running")
    reason = next((r for r in SELF_REASONS if r.value == arg), None)
    if reason is None:
        status.write(state="failed", error="That is not a reason for a backup.")
        return 2
    try:
        result = asyncio.run(_take_self(settings, reason, status))
    except BackupError as exc:
        status.write(state="failed", error=str(exc))
        return 1
    except Exception:
        log.exception("Steward's own snapshot failed")
        status.write(state="failed", error="Steward's own snapshot failed; the journal says why.")
        return 1
    status.write(state="done", result=result)
    return 0


async def _take_self(
    settings: Settings, reason: BackupReason, status: StatusFile
) -> dict[str, object]:
    cache = os.environ.get("CACHE_DIRECTORY")
    backups = _backups(settings, Path(cache) if cache else settings.work_dir / "cache")
    if backups is None:
        raise BackupError("Backups are not set up: STEWARD_RESTIC_REPOSITORY is unset.")

    async def progress(report: BackupProgress) -> None:
        await asyncio.to_thread(status.write, state="running", progress=dataclasses.asdict(report))

    snapshot = LocalSelfSnapshot(backups, self_sources(settings), settings.work_dir)
    return result_to_json(await snapshot.take(reason, progress))


def work(settings: Settings, kind: str, instance: str, *, foreign: bool = False) -> int:
    if foreign and kind != "restore":
        print("steward worker: --foreign is for a restore only", file=sys.stderr)
        return 2
    own = SELF_INSTANCE.fullmatch(instance)
    if own is not None and kind == "backup":
        return _work_self(settings, own.group("arg"))
    return _work_service(settings, kind, instance, foreign=foreign)


def _work_service(settings: Settings, kind: str, instance: str, *, foreign: bool) -> int:
    found = INSTANCE.fullmatch(instance)
    if found is None:
        print(f"steward worker: {instance!r} is not SERVICE:ARG", file=sys.stderr)
        return 2
    service, arg = found.group("service"), found.group("arg")
    info = _catalogue(settings).get(service)
    if info is None or not info.folders:
        print(f"steward worker: no service {service} with folders", file=sys.stderr)
        return 2
    template = FOREIGN_RESTORE if foreign else f"steward-{kind}"
    status = StatusFile(settings.work_dir / "jobs", service, f"{template}@{instance}.service")
    status.write(state="running")
    try:
        result = asyncio.run(_work(settings, kind, service, arg, status, foreign=foreign))
    except RestoreError as exc:
        status.write(state="failed", error=str(exc), kept_old=exc.kept_old,
                     safety_snapshot=exc.safety_snapshot)  # fmt: skip
        return 1
    except BackupError as exc:
        status.write(state="failed", error=str(exc))
        return 1
    except Exception:
        log.exception("%s of %s failed", kind, service)
        status.write(state="failed", error=f"The {kind} failed; the journal of its unit says why.")
        return 1
    status.write(state="done", result=result)
    return 0


async def _work(
    settings: Settings, kind: str, service: str, arg: str, status: StatusFile, *, foreign: bool
) -> dict[str, object]:
    catalogue = _catalogue(settings)
    info = catalogue[service]
    # Root never writes into the bot's state folder (a link there could point anywhere): its
    # journal, dumps and status go to STEWARD_WORKER_DIR, its restic cache to CacheDirectory=.
    cache = os.environ.get("CACHE_DIRECTORY")
    backups = _backups(settings, Path(cache) if cache else settings.work_dir / "cache")
    if backups is None:
        raise BackupError("Backups are not set up: STEWARD_RESTIC_REPOSITORY is unset.")
    dumps = _dumps(settings)
    restorer = Restorer(backups, SystemctlServiceManager(), settings.work_dir / "restore",
                        dumps=dumps)  # fmt: skip
    jobs = LocalDataJobs(backups, restorer, dumps)
    ledger = SnapshotLedger(settings.work_dir / "snapshots")

    async def step(text: str) -> None:
        log.info("%s", text)
        await asyncio.to_thread(status.write, state="running", step=text)

    if kind == "backup":
        reason = next((r for r in REASONS if r.value == arg), None)
        if reason is None:
            raise BackupError("That is not a reason for a backup.")

        async def progress(report: BackupProgress) -> None:
            await asyncio.to_thread(
                status.write, state="running", progress=dataclasses.asdict(report)
            )

        done = await jobs.backup(info, reason, progress)
        await _record(backups, ledger, service, done.snapshot_id)
        return result_to_json(done)
    if snapshot_arg(arg) == RECOVER:
        restored, said = await jobs.recover(service, step)
        return {"restored": restored, "said": said}
    snapshots = [s for s in await backups.snapshots(service) if s.id.startswith(arg)]
    if len(snapshots) != 1:
        raise BackupError("No single snapshot of this service matches.")
    snapshot = snapshots[0]
    if not foreign and not ledger.knows(service, snapshot.id, snapshot.tree):
        raise BackupError(
            f"Snapshot {snapshot.short_id} was not taken by this server's backup units, so it "
            "is not restored. An admin who trusts it can restore it from a root shell: "
            f"systemctl start steward-restore-foreign@{service}:{snapshot.short_id}.service"
        )
    dump_folder = str(dumps.folder(service)) if dumps is not None else None
    plan = plan_restore(info, snapshot, catalogue, dump_folder)
    try:
        report = await jobs.restore(plan, step)
    except RestoreError as exc:
        await _record(backups, ledger, service, exc.safety_snapshot)
        raise
    await _record(backups, ledger, service, report.safety_snapshot)
    return result_to_json(report)


async def _record(
    backups: BackupEngine, ledger: SnapshotLedger, service: str, snapshot_id: str | None
) -> None:
    """Root took this snapshot: record it with its tree, as the repository lists it now."""
    if snapshot_id is None:
        return
    # restic's summary may give the short id: the listing has the full one.
    found = [s for s in await backups.snapshots(service) if s.id.startswith(snapshot_id)]
    if len(found) != 1 or found[0].tree is None:
        raise BackupError(f"Snapshot {snapshot_id[:8]} was taken but cannot be found to record.")
    await asyncio.to_thread(ledger.record, service, found[0].id, found[0].tree)

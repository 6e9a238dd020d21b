"""Putting a service's data back from a snapshot, so that a failure at any step keeps the old data.

The steps, in order:

1. a safety snapshot of the folders as they are now (reason ``pre-restore``);
2. the service's units stop;
3. each folder is restored with ``--verify`` into a staging folder beside it, on the same
   filesystem, so that the swap is a rename;
4. the swap: the live folder becomes ``.<name>.steward-old``, the staged one takes its place;
5. the databases are loaded from the dumps in the snapshot, each in one transaction;
6. the units start again, and the old folders go.

A journal file (written atomically) records how far a restore got. On any failure before the
end of step 5, the swapped folders are put back and the units start again. After a crash,
:meth:`Restorer.recover` does the same from the journal; a restore that had finished step 5
is finished instead. The old data is deleted only after the units have started.

Folders are mapped under ``root`` (``/`` on a server; a folder of its own in the demo), while
the paths inside snapshots stay the service's real paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from providers.backup.base import (
    BackupError,
    BackupReason,
    RestoreError,
    RestorePlan,
    RestoreReport,
    Snapshot,
    Step,
)
from providers.host.base import fsync_dir
from providers.host.catalogue import ServiceInfo

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine, DatabaseDumps, Units

log = logging.getLogger(__name__)
STAGING, OLD = ".steward-restore", ".steward-old"


def plan_restore(
    info: ServiceInfo,
    snapshot: Snapshot,
    catalogue: Mapping[str, ServiceInfo],
    dump_folder: str | None,
) -> RestorePlan:
    """What a restore of ``snapshot`` puts back: the service's folders that it holds, its
    databases when it holds their dumps, and the units only this service has (a shared one,
    such as nginx, keeps serving the others)."""
    if snapshot.service_id != info.id:
        raise BackupError(f"Snapshot {snapshot.short_id} is not one of {info.name}'s.")
    folders = tuple(folder for folder in info.folders if folder in snapshot.paths)
    if not folders:
        raise BackupError(
            f"Snapshot {snapshot.short_id} holds none of {info.name}'s folders today."
        )
    dumped = dump_folder is not None and dump_folder in snapshot.paths
    shared = {unit for sid, other in catalogue.items() if sid != info.id for unit in other.units}
    units = tuple(unit for unit in info.units if unit not in shared)
    return RestorePlan(info.id, snapshot.id, folders, units, info.databases if dumped else ())


@dataclass
class _Journal:
    service_id: str
    snapshot_id: str
    folders: list[str]
    units: list[str]
    existed: list[str]  # folders that were there before the restore
    swapping: list[str] = field(default_factory=list)  # from just before the first rename
    committed: bool = False
    safety_snapshot: str | None = None


class Restorer:
    def __init__(
        self,
        backups: BackupEngine,
        units: Units,
        work_dir: Path,
        *,
        root: Path = Path("/"),
        dumps: DatabaseDumps | None = None,
    ) -> None:
        self._backups = backups
        self._units = units
        self._work = work_dir
        self._root = root
        self._dumps = dumps
        self._lock = asyncio.Lock()

    def local(self, path: str) -> Path:
        """Where a service's path is on this machine."""
        return self._root / path.lstrip("/")

    def dump_folder(self, service_id: str) -> str | None:
        return str(self._dumps.folder(service_id)) if self._dumps is not None else None

    def interrupted(self) -> list[str]:
        """Services whose restore a crash interrupted."""
        if not self._work.is_dir():
            return []
        return sorted(path.stem for path in self._work.glob("*.json"))

    async def restore(self, plan: RestorePlan, step: Step) -> RestoreReport:
        async with self._lock:
            with self._exclusive(plan.service_id):
                return await self._restore(plan, step)

    async def _restore(self, plan: RestorePlan, step: Step) -> RestoreReport:
        if self._journal_path(plan.service_id).exists():
            raise BackupError(
                "An earlier restore of this service was interrupted and is not put right yet."
            )
        safety = await self._safety_snapshot(plan, step)
        existed = [folder for folder in plan.folders if self.local(folder).exists()]
        journal = _Journal(plan.service_id, plan.snapshot_id, list(plan.folders),
                           list(plan.units), existed, safety_snapshot=safety)  # fmt: skip
        await asyncio.to_thread(self._save, journal)
        stopped: list[str] = []
        try:
            for unit in plan.units:
                await step(f"Stopping {unit}")
                await self._units.stop(unit)
                stopped.append(unit)
            files = size = 0
            for index, folder in enumerate(plan.folders, 1):
                await step(
                    f"Restoring {folder} ({index}/{len(plan.folders)}) into a staging folder, "
                    "with verification"
                )
                done = await self._stage(plan.snapshot_id, folder)
                files, size = files + done[0], size + done[1]
            await step("Swapping the restored folders into place")
            for folder in plan.folders:
                await asyncio.to_thread(self._clear_way, folder)
                journal.swapping.append(folder)
                await asyncio.to_thread(self._save, journal)
                await asyncio.to_thread(self._swap, folder)
            loaded = await self._load_databases(plan, step)
            journal.committed = True
            await asyncio.to_thread(self._save, journal)
        except Exception as exc:  # whatever failed, the old data goes back
            if not isinstance(exc, BackupError):
                log.exception("restore of %s failed", plan.service_id)
            reason = str(exc) if isinstance(exc, BackupError) else _os_sentence(exc)
            await step("Putting the old data back")
            kept_old = await self._roll_back(journal, stopped)
            raise RestoreError(reason, kept_old=kept_old, safety_snapshot=safety) from exc
        await self._finish(journal, step)
        return RestoreReport(plan.snapshot_id, safety, plan.folders, files, size, loaded)

    async def recover(self, service_id: str, step: Step) -> tuple[bool, str]:
        """Put right a restore a crash interrupted: (whether the restored data is in place,
        what was done)."""
        async with self._lock:
            with self._exclusive(service_id):
                return await self._recover(service_id, step)

    async def _recover(self, service_id: str, step: Step) -> tuple[bool, str]:
        journal = await asyncio.to_thread(self._read, service_id)
        if journal is None:
            return False, "Nothing was changed."
        if journal.committed:
            await self._finish(journal, step)
            return True, "The restore had finished; the service is started again."
        await step("Putting the old data back")
        if await self._roll_back(journal, journal.units):
            return False, "It was cut short; the old data is back in place."
        return False, "It was cut short, and the old data could not all be put back."

    # -- the steps ----------------------------------------------------------------------------

    async def _safety_snapshot(self, plan: RestorePlan, step: Step) -> str | None:
        present = [Path(folder) for folder in plan.folders if self.local(folder).exists()]
        if not present:
            return None  # nothing there yet to keep
        await step("Taking a safety snapshot of the data as it is now")
        try:
            if plan.databases and self._dumps is not None:
                present.append(await self._dumps.dump(plan.service_id, plan.databases))
            result = await self._backups.backup(plan.service_id, present, BackupReason.PRE_RESTORE)
        except BackupError as exc:
            raise RestoreError(
                f"The safety snapshot failed, so nothing was changed: {exc}",
                kept_old=True, safety_snapshot=None,
            ) from None  # fmt: skip
        finally:
            if plan.databases and self._dumps is not None:
                await self._dumps.clean(plan.service_id)
        return result.snapshot_id

    async def _stage(self, snapshot_id: str, folder: str) -> tuple[int, int]:
        live = self.local(folder)
        staging = live.parent / f".{live.name}{STAGING}"
        await asyncio.to_thread(_remove, staging)
        await asyncio.to_thread(staging.mkdir, 0o700, True, True)
        result = await self._backups.restore(snapshot_id, staging, [folder], verify=True)
        if not (staging / folder.lstrip("/")).is_dir():
            raise BackupError(f"The snapshot holds no folder {folder}.")
        return result.files, result.bytes

    def _clear_way(self, folder: str) -> None:
        live = self.local(folder)
        old = live.parent / f".{live.name}{OLD}"
        if old.exists():
            raise BackupError(f"{old} is in the way; move it elsewhere and try again.")

    def _swap(self, folder: str) -> None:
        live = self.local(folder)
        staged = live.parent / f".{live.name}{STAGING}" / folder.lstrip("/")
        old = live.parent / f".{live.name}{OLD}"
        if live.exists():
            os.rename(live, old)
        os.rename(staged, live)
        fsync_dir(live.parent)

    async def _load_databases(self, plan: RestorePlan, step: Step) -> tuple[str, ...]:
        if not plan.databases or self._dumps is None:
            return ()
        folder = str(self._dumps.folder(plan.service_id))
        staging = self._work / f"{plan.service_id}-dumps"
        await asyncio.to_thread(_remove, staging)
        await asyncio.to_thread(staging.mkdir, 0o700, True, True)
        try:
            await step(f"Loading {len(plan.databases)} database(s) from the snapshot's dumps")
            await self._backups.restore(plan.snapshot_id, staging, [folder], verify=True)
            await self._dumps.load(staging / folder.lstrip("/"), plan.databases)
        finally:
            await asyncio.to_thread(_remove, staging)
        return plan.databases

    async def _roll_back(self, journal: _Journal, stopped: Sequence[str]) -> bool:
        kept_old = True
        for folder in reversed(journal.folders):
            try:
                if folder in journal.swapping:
                    await asyncio.to_thread(self._unswap, folder, folder in journal.existed)
            except OSError:
                kept_old = False
        for folder in journal.folders:
            live = self.local(folder)
            await asyncio.to_thread(_remove, live.parent / f".{live.name}{STAGING}")
        await self._start(stopped)
        if kept_old:
            await asyncio.to_thread(self._forget, journal.service_id)
        return kept_old

    def _unswap(self, folder: str, existed: bool) -> None:
        """Undo a swap that began: the journal says so, and nothing else was ever at ``old``."""
        live = self.local(folder)
        old = live.parent / f".{live.name}{OLD}"
        if not old.exists():
            if not existed:
                _remove(live)  # the restore created it
            return  # otherwise not swapped yet: the live folder is the old data
        _remove(live)
        os.rename(old, live)
        fsync_dir(live.parent)

    async def _finish(self, journal: _Journal, step: Step) -> None:
        await step("Starting the service again")
        await self._start(journal.units)
        for folder in journal.folders:
            live = self.local(folder)
            await asyncio.to_thread(_remove, live.parent / f".{live.name}{OLD}")
            await asyncio.to_thread(_remove, live.parent / f".{live.name}{STAGING}")
        await asyncio.to_thread(self._forget, journal.service_id)

    async def _start(self, units: Sequence[str]) -> None:
        for unit in units:
            with contextlib.suppress(Exception):  # one that will not start is seen in /status
                await self._units.start(unit)

    # -- the journal --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, service_id: str) -> Iterator[None]:
        """One restore of a service at a time, across processes (two root units, or a unit
        and a bot that restarted)."""
        self._work.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self._work / f"{service_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError("Another restore of this service is running.") from None
            yield
        finally:
            os.close(descriptor)

    def _journal_path(self, service_id: str) -> Path:
        return self._work / f"{service_id}.json"

    def _save(self, journal: _Journal) -> None:
        self._work.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._journal_path(journal.service_id)
        temp = path.with_suffix(".tmp")
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(journal.__dict__, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_dir(self._work)

    def _read(self, service_id: str) -> _Journal | None:
        try:
            data = json.loads(self._journal_path(service_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return _Journal(**data)

    def _forget(self, service_id: str) -> None:
        self._journal_path(service_id).unlink(missing_ok=True)
        self._journal_path(service_id).with_suffix(".tmp").unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _os_sentence(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"The restore failed: {exc.strerror}."
    return "The restore failed."

"""Backups and restores of a service's own data, in the bot or in a root unit.

Reading a service's folders, writing them back and dumping its databases need root; the bot
runs unprivileged. On a server the NixOS module declares two root template units, and the bot
starts ``steward-backup@<service>:<reason>.service`` or
``steward-restore@<service>:<snapshot|recover>.service`` (polkit lets it start exactly those)
and reads their progress and outcome from a status file the unit writes into the state
folder. ``steward worker`` (bot/worker.py) is what those units run, with :class:`LocalDataJobs`
doing the work, as it does in the bot itself in the demo, in tests and on a machine where the
bot may read and write the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.backup.base import (
    SELF,
    BackupError,
    BackupProgress,
    BackupReason,
    BackupResult,
    ProgressCallback,
    RestoreError,
    RestorePlan,
    RestoreReport,
    Step,
)
from providers.backup.restore import Restorer
from providers.host.base import UnitError, run_tool
from providers.host.catalogue import ServiceInfo

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine, DatabaseDumps

# Matched whole (fullmatch: ``$`` would let a final newline through). The argument is a
# reason, ``recover`` or a snapshot id, and nothing that could read as an option.
INSTANCE = re.compile(
    r"(?P<service>[a-z0-9][a-z0-9_-]{0,63}):(?P<arg>manual|scheduled|recover|[0-9a-f]{8,64})"
)
# Steward's own snapshot, steward-backup@steward:<reason>: backup only, and its reasons only.
SELF_INSTANCE = re.compile(r"steward:(?P<arg>manual|scheduled|pre-upgrade)")
SNAPSHOT = re.compile(r"[0-9a-f]{8,64}")
RECOVER = "recover"
# Root's shell only: a snapshot taken elsewhere (the lost server's, for ``steward recover``).
FOREIGN_RESTORE = "steward-restore-foreign"


class LocalDataJobs:
    def __init__(
        self, backups: BackupEngine, restorer: Restorer, dumps: DatabaseDumps | None = None
    ) -> None:
        self._backups = backups
        self._restorer = restorer
        self._dumps = dumps

    async def backup(
        self, info: ServiceInfo, reason: BackupReason, on_progress: ProgressCallback
    ) -> BackupResult:
        paths = [Path(folder) for folder in info.folders]
        dumps = self._dumps if info.databases else None
        try:
            if dumps is not None:
                paths.append(await dumps.dump(info.id, info.databases))
            return await self._backups.backup(info.id, paths, reason, on_progress)
        finally:
            if dumps is not None:
                await dumps.clean(info.id)

    async def restore(self, plan: RestorePlan, step: Step) -> RestoreReport:
        return await self._restorer.restore(plan, step)

    async def recover(self, service_id: str, step: Step) -> tuple[bool, str]:
        return await self._restorer.recover(service_id, step)


# -- the status file a unit writes and the bot reads ---------------------------------------


class StatusFile:
    """``<jobs>/<service>.json``: ``{"state": "running"|"done"|"failed", "started": …, ...}``,
    replaced atomically at each change. Only the worker (root) writes the folder; the bot reads
    it (folder 0755, files 0644: progress and outcomes, never a secret). ``started`` tells the
    bot which run wrote it."""

    def __init__(self, folder: Path, service_id: str, unit: str | None = None) -> None:
        self.path = folder / f"{service_id}.json"
        self._unit = unit
        self._started = time.time()

    def write(self, **data: Any) -> None:
        data["started"] = self._started
        if self._unit is not None:
            data["unit"] = self._unit
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)  # noqa: S103 - the bot reads it; the unit umask is 0077
        temp = self.path.with_suffix(".tmp")
        temp.unlink(missing_ok=True)
        # O_EXCL | O_NOFOLLOW: never through a link someone left in the folder.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temp, flags, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def result_to_json(result: BackupResult | RestoreReport) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(result).items()}  # fmt: skip


def backup_result(data: dict[str, Any]) -> BackupResult:
    return BackupResult(**data)


def restore_report(data: dict[str, Any]) -> RestoreReport:
    data = dict(data)
    for key in ("folders", "databases"):
        data[key] = tuple(data[key])
    return RestoreReport(**data)


# -- the bot's side: start the unit, follow the file ---------------------------------------


class UnitDataJobs:
    """Runs each job in its root unit. ``systemctl start`` waits for a oneshot unit to end;
    meanwhile the status file is read every ``poll`` seconds for progress.

    With ``foreign=True`` a restore runs in ``steward-restore-foreign@``, which restores a
    snapshot no backup unit of this server took (``steward recover`` on a new server). Only
    root may start that unit: polkit never grants it to the bot."""

    def __init__(
        self, jobs_dir: Path, *, timeout: float = 6 * 3600, poll: float = 1.0,
        foreign: bool = False,
    ) -> None:  # fmt: skip
        self._dir = jobs_dir
        self._timeout = timeout
        self._poll = poll
        self._restore_unit = FOREIGN_RESTORE if foreign else "steward-restore"

    async def backup(
        self, info: ServiceInfo, reason: BackupReason, on_progress: ProgressCallback
    ) -> BackupResult:
        async def shown(data: dict[str, Any]) -> None:
            if isinstance(data.get("progress"), dict):
                await on_progress(BackupProgress(**data["progress"]))

        outcome = await self._run("steward-backup", info.id, reason.value, shown)
        return backup_result(outcome["result"])

    async def restore(self, plan: RestorePlan, step: Step) -> RestoreReport:
        outcome = await self._run(
            self._restore_unit, plan.service_id, plan.snapshot_id, _steps_to(step)
        )
        return restore_report(outcome["result"])

    async def backup_self(
        self, reason: BackupReason, on_progress: ProgressCallback | None = None
    ) -> BackupResult:
        """Steward's own snapshot, in ``steward-backup@steward:<reason>``: root reads what the
        bot may not (the database of a bot that cannot read /etc/nixos, the DKIM keys)."""

        async def shown(data: dict[str, Any]) -> None:
            if on_progress is not None and isinstance(data.get("progress"), dict):
                await on_progress(BackupProgress(**data["progress"]))

        outcome = await self._run("steward-backup", SELF, reason.value, shown)
        return backup_result(outcome["result"])

    async def recover(self, service_id: str, step: Step) -> tuple[bool, str]:
        """After the bot restarted: a restore unit outlives the bot, so its own outcome comes
        first; only a restore that left none (the machine went down) is put right."""
        status = StatusFile(self._dir, service_id)
        data = await asyncio.to_thread(status.read)
        unit = str(data.get("unit", "")) if data is not None else ""
        if data is not None and unit.startswith(("steward-restore@", f"{FOREIGN_RESTORE}@")):
            while data is not None and data.get("state") == "running" and await _active(unit):
                await asyncio.sleep(self._poll)
                data = await asyncio.to_thread(status.read)
            if data is not None and data.get("state") == "done" and "folders" in data["result"]:
                done = restore_report(data["result"])
                return True, f"It finished meanwhile: {done.files} files put back, verified."
            if data is not None and data.get("state") == "failed" and "kept_old" in data:
                kept = "the old data is back in place" if data["kept_old"] else (
                    "the old data could not all be put back")  # fmt: skip
                return False, f"It failed meanwhile ({data.get('error')}); {kept}."

        outcome = await self._run("steward-restore", service_id, RECOVER, _steps_to(step))
        return bool(outcome["result"]["restored"]), str(outcome["result"]["said"])

    async def _run(
        self,
        template: str,
        service_id: str,
        arg: str,
        shown: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> dict[str, Any]:
        instance = f"{service_id}:{arg}"
        if template == "steward-backup" and service_id == SELF:
            if not SELF_INSTANCE.fullmatch(instance):
                raise BackupError("That is not a reason for Steward's own snapshot.")
        elif not INSTANCE.fullmatch(instance):
            raise BackupError("That is not a service and snapshot.")
        status = StatusFile(self._dir, service_id)
        began = time.time() - 1.0  # what an earlier run left is older
        unit = f"{template}@{instance}.service"
        started = asyncio.ensure_future(run_tool("systemctl", ["start", "--", unit], self._timeout))
        seen: object = None
        try:
            while not started.done():
                await asyncio.wait({started}, timeout=self._poll)
                data = _newer(await asyncio.to_thread(status.read), began)
                if data is not None and data != seen and data.get("state") == "running":
                    seen = data
                    with contextlib.suppress(Exception):  # progress is best effort
                        await shown(data)
            failure: UnitError | None = None
            try:
                started.result()
            except UnitError as exc:
                failure = exc
        finally:
            if not started.done():
                started.cancel()
        outcome = _newer(await asyncio.to_thread(status.read), began)
        return _outcome(outcome, failure, unit)


def _newer(data: dict[str, Any] | None, began: float) -> dict[str, Any] | None:
    started = data.get("started") if data is not None else None
    return data if isinstance(started, (int, float)) and started >= began else None


def _steps_to(step: Step) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def shown(data: dict[str, Any]) -> None:
        if isinstance(data.get("step"), str):
            await step(data["step"])

    return shown


async def _active(unit: str) -> bool:
    try:
        state = await run_tool("systemctl", ["is-active", "--", unit], 30)
    except UnitError:
        return False  # is-active exits non-zero when the unit is not active
    return state.strip() in {"active", "activating", "reloading"}


def _outcome(data: dict[str, Any] | None, failure: UnitError | None, unit: str) -> dict[str, Any]:
    if data is not None and data.get("state") == "done":
        return data
    if data is not None and data.get("state") == "failed":
        message = str(data.get("error") or "The job failed.")
        if "kept_old" in data:
            raise RestoreError(
                message,
                kept_old=bool(data["kept_old"]),
                safety_snapshot=data.get("safety_snapshot"),
            )
        raise BackupError(message)
    why = f" ({failure})" if failure is not None else ""
    raise BackupError(f"{unit} ended without an outcome{why}; journalctl -u {unit} says why.")


class UnitSelfSnapshot:
    """The ``SelfSnapshot`` of a bot whose data jobs run in root units."""

    def __init__(self, jobs: UnitDataJobs) -> None:
        self._jobs = jobs

    async def take(
        self, reason: BackupReason, on_progress: ProgressCallback | None = None
    ) -> BackupResult:
        return await self._jobs.backup_self(reason, on_progress)


def snapshot_arg(arg: str) -> str:
    if arg != RECOVER and not SNAPSHOT.fullmatch(arg):
        raise BackupError("That is not a snapshot id.")
    return arg

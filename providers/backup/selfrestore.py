"""Putting Steward's own snapshot back on a new server (``steward recover``), part by part.

Each part is restored with ``--verify`` into a staging folder beside its destination, on the
same filesystem, so that it takes its place with one rename: a file replaces the old one
atomically; a folder that was there (the new server's /etc/nixos, with its own
hardware-configuration.nix) moves aside to ``<name>.before-recover`` first, and is kept.
What is put back gets the owner of what was there, or of the folder it goes into: restic
would give it the numeric ids of the old server, which need not be the same users here.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.backup.base import SELF, BackupError, Snapshot
from providers.backup.pgdump import restore_database
from providers.backup.selfsnapshot import (
    BUNDLE,
    MANIFEST,
    POSTGRES_DUMP,
    SQLITE_DUMP,
    parse_database,
    password_file_for,
)
from providers.host.base import fsync_dir

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine

STAGING = ".steward-recover"
ASIDE = ".before-recover"


class OwnRestore:
    """Restores the parts of one ``service:steward`` snapshot."""

    def __init__(self, backups: BackupEngine, snapshot: Snapshot, work_dir: Path) -> None:
        if snapshot.service_id != SELF or not snapshot.paths:
            raise BackupError(f"Snapshot {snapshot.short_id} is not one of Steward's own.")
        self._backups = backups
        self._snapshot = snapshot
        self._bundle = next((p for p in snapshot.paths if p.endswith(f"/{BUNDLE}")), "")
        self._work = work_dir
        if not self._bundle:
            raise BackupError(f"Snapshot {snapshot.short_id} holds no Steward bundle.")

    async def manifest(self) -> dict[str, Any]:
        staged = await self._stage(MANIFEST, self._work / f"{STAGING}-manifest")
        try:
            data = json.loads(staged.read_text(encoding="utf-8"))
        finally:
            await asyncio.to_thread(shutil.rmtree, self._work / f"{STAGING}-manifest", True)
        if not isinstance(data, dict) or data.get("format") != 1:
            raise BackupError("The snapshot's manifest is of a format this Steward does not know.")
        return data

    async def database(self, url: str, postgres_user: str, parts: list[str]) -> str:
        target = parse_database(url, postgres_user)
        if f"database:{target.kind}" not in parts:
            raise BackupError(f"The snapshot holds no {target.kind} database; set "
                              "STEWARD_DATABASE_URL as the old server had it.")  # fmt: skip
        if target.kind == "sqlite":
            assert target.path is not None  # noqa: S101 - parse_database sets it
            await self.file(SQLITE_DUMP, target.path, sqlite=True)
            return str(target.path)
        assert target.postgres is not None  # noqa: S101 - parse_database sets it
        folder = self._work / f"{STAGING}-database"
        try:
            dump = await self._stage(POSTGRES_DUMP, folder)
            with password_file_for(target.password, folder) as password_file:
                settings = replace(target.postgres, password_file=password_file)
                await restore_database(target.name, dump, settings)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return f"PostgreSQL database {target.name}"

    async def file(self, part: str, destination: Path, *, sqlite: bool = False) -> None:
        staging = destination.parent / f".{destination.name}{STAGING}"
        try:
            staged = await self._stage(part, staging)
            await asyncio.to_thread(_put_file, staged, destination, sqlite)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def folder(self, part: str, destination: Path) -> Path | None:
        """Returns where the folder that was there went, if there was one."""
        staging = destination.parent / f".{destination.name}{STAGING}"
        try:
            staged = await self._stage(part, staging)
            return await asyncio.to_thread(_put_folder, staged, destination)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _stage(self, part: str, staging: Path) -> Path:
        await asyncio.to_thread(shutil.rmtree, staging, True)
        await asyncio.to_thread(staging.mkdir, 0o700, True, True)
        source = f"{self._bundle}/{part}"
        await self._backups.restore(self._snapshot.id, staging, [source], verify=True)
        staged = staging / source.lstrip("/")
        if not staged.exists():
            raise BackupError(f"The snapshot holds no {part}.")
        return staged


def _put_file(staged: Path, destination: Path, sqlite: bool) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    _own_like(staged, destination)
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    if sqlite:
        # A journal of the new server's database would be applied to the old one: gone first.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{destination}{suffix}").unlink(missing_ok=True)
    os.replace(staged, destination)
    fsync_dir(destination.parent)


def _put_folder(staged: Path, destination: Path) -> Path | None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    _own_like(staged, destination, tree=True)
    aside: Path | None = None
    if destination.exists() or destination.is_symlink():
        aside = destination.with_name(destination.name + ASIDE)
        if aside.exists():
            raise BackupError(f"{aside} is in the way; move it elsewhere and try again.")
        os.rename(destination, aside)
    os.rename(staged, destination)
    fsync_dir(destination.parent)
    return aside


def _own_like(staged: Path, destination: Path, *, tree: bool = False) -> None:
    if os.geteuid() != 0:
        return  # only root can give files away; anyone else already owns them
    model = destination if destination.exists() else destination.parent
    stat = model.stat()
    paths = [staged]
    if tree:
        paths += [Path(top) / name for top, dirs, files in os.walk(staged) for name in dirs + files]
    for path in paths:
        os.lchown(path, stat.st_uid, stat.st_gid)

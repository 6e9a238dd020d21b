"""Steward's own snapshot (tag ``service:steward``): what a lost server needs to come back.

It holds one folder, the *bundle*, built fresh for each snapshot:

- ``database/steward.db`` (SQLite, copied with SQLite's online backup API, so a bot writing
  meanwhile never leaves a torn copy) or ``database/steward.pgdump`` (``pg_dump``);
- ``desired-state.json`` and ``catalogue.json`` (the catalogue is read through its link: on
  NixOS it is a link into the store, which a restore elsewhere could not follow);
- ``nixos/``: a copy of ``/etc/nixos``; ``dkim/``: the folder of ``STEWARD_DKIM_FILE``;
- ``manifest.json``: which parts are there and where they came from.

Copying into a bundle, rather than backing up the live paths, gives every snapshot the same
layout, whatever the paths were, and turns links to the store into the files they name.
The bundle lives in the worker's own folder (mode 0700) and is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from providers.backup.base import SELF, BackupError, BackupReason, BackupResult, ProgressCallback
from providers.backup.pgdump import PostgresSettings, dump_database
from values import value

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine

BUNDLE = "steward-self"
MANIFEST = "manifest.json"
SQLITE_DUMP = "database/steward.db"
POSTGRES_DUMP = "database/steward.pgdump"
FORMAT = 1


@value
class SelfSources:
    """Where the parts live on this server; from the configuration, never from chat."""

    database_url: str
    desired_state: Path | None
    catalogue: Path | None
    nixos_dir: Path | None
    dkim_dir: Path | None
    postgres_user: str = "postgres"  # when the URL names none (the root unit's peer map)


@value
class Database:
    """The bot's database, from its SQLAlchemy URL."""

    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None
    name: str = ""
    postgres: PostgresSettings | None = None
    password: str | None = None


def parse_database(url: str, default_user: str = "postgres") -> Database:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        rest = url.split(":///", 1)[1] if ":///" in url else ""
        if not rest or rest.startswith(":memory:"):
            raise BackupError("The bot's database is in memory; there is nothing to back up.")
        return Database("sqlite", path=Path(unquote(rest.split("?", 1)[0])))
    if scheme != "postgresql":
        raise BackupError("Only SQLite and PostgreSQL databases can be backed up.")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["/run/postgresql"])[0]
    settings = PostgresSettings(
        host=host, port=parts.port or 5432, user=unquote(parts.username or default_user)
    )
    password = unquote(parts.password) if parts.password else None
    return Database("postgresql", name=unquote(parts.path.lstrip("/")), postgres=settings,
                    password=password)  # fmt: skip


class LocalSelfSnapshot:
    """Builds the bundle and backs it up, in this process: in the bot where it may read every
    part, or in the root unit ``steward-backup@steward:<reason>`` (``steward worker``)."""

    def __init__(self, backups: BackupEngine, sources: SelfSources, work_dir: Path) -> None:
        self._backups = backups
        self._sources = sources
        self._work = work_dir / "self-snapshot"

    async def take(
        self, reason: BackupReason, on_progress: ProgressCallback | None = None
    ) -> BackupResult:
        bundle = self._work / BUNDLE
        try:
            await asyncio.to_thread(_fresh, bundle)
            parts = await self._dump_database(bundle)
            parts += await asyncio.to_thread(_copy_files, self._sources, bundle)
            await asyncio.to_thread(_write_manifest, bundle, self._sources, parts)
            return await self._backups.backup(SELF, [bundle], reason, on_progress)
        finally:
            await asyncio.to_thread(shutil.rmtree, bundle, True)

    async def _dump_database(self, bundle: Path) -> list[str]:
        database = parse_database(self._sources.database_url, self._sources.postgres_user)
        if database.kind == "sqlite":
            assert database.path is not None  # noqa: S101 - parse_database sets it
            await asyncio.to_thread(sqlite_copy, database.path, bundle / SQLITE_DUMP)
            return ["database:sqlite"]
        assert database.postgres is not None  # noqa: S101 - parse_database sets it
        (bundle / "database").mkdir(mode=0o700)
        with password_file_for(database.password, self._work) as password_file:
            settings = replace(database.postgres, password_file=password_file)
            await dump_database(database.name, bundle / POSTGRES_DUMP, settings)
        return ["database:postgresql"]


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API), read-only on the
    source: root must not leave files of its own beside the bot's database."""
    if not source.is_file():
        raise BackupError(f"The bot's database is not at {source}.")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"The bot's database cannot be read: {exc}.") from None
    finally:
        src.close()
    os.replace(partial, target)


def _fresh(bundle: Path) -> None:
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    bundle.mkdir(mode=0o700)


def _copy_files(sources: SelfSources, bundle: Path) -> list[str]:
    parts = []
    for name, path in (("desired-state.json", sources.desired_state),
                       ("catalogue.json", sources.catalogue)):  # fmt: skip
        if path is not None and path.is_file():
            # Through the link: the catalogue is a link into the Nix store on NixOS.
            (bundle / name).write_bytes(path.read_bytes())
            parts.append(name)
    for name, folder in (("nixos", sources.nixos_dir), ("dkim", sources.dkim_dir)):
        if folder is not None and folder.is_dir():
            shutil.copytree(folder, bundle / name, symlinks=True)
            parts.append(name)
    return parts


def _write_manifest(bundle: Path, sources: SelfSources, parts: list[str]) -> None:
    manifest = {
        "format": FORMAT,
        "taken": datetime.now(UTC).isoformat(),
        "parts": parts,
        "from": {
            "desired_state": str(sources.desired_state or ""),
            "catalogue": str(sources.catalogue or ""),
            "nixos": str(sources.nixos_dir or ""),
            "dkim": str(sources.dkim_dir or ""),
        },
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


@contextlib.contextmanager
def password_file_for(password: str | None, folder: Path) -> Iterator[Path | None]:
    """The password of a PostgreSQL URL in a private file for pgdump (never in argv)."""
    if password is None:
        yield None
        return
    descriptor, name = tempfile.mkstemp(prefix=".pgpassword-", dir=folder)  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)

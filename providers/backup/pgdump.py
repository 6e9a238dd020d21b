"""PostgreSQL databases into and out of files, with ``pg_dump`` and ``pg_restore`` from PATH.

A service's database is dumped to a file in its backup folder before restic runs, and restored
from that file after a restore. The password never goes in argv: it is read from
``password_file`` and handed to libpq through a private, temporary ``PGPASSFILE`` (mode 0600)
that is deleted afterwards. The child's environment is built here; no ``PG*`` variable of the
bot's own environment leaks in.

A dump is loaded as the database's own role, never as the superuser that took it: whoever can
write to the backup repository can plant a dump, and a dump is SQL (a check constraint can
call a function that runs ``COPY … FROM PROGRAM``). ``--no-owner --no-privileges`` keep it from
asking for more, and an owner that is a superuser, or could make itself one, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from providers.backup.base import BackupError
from values import value

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


class DatabaseDumpError(BackupError):
    """pg_dump or pg_restore failed; the message is one short sentence, safe to show."""


@value
class PostgresSettings:
    host: str = "/run/postgresql"  # a socket folder or a host name
    port: int = 5432
    user: str = "postgres"
    password_file: Path | None = None
    timeout: float = 3600.0
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    psql: str = "psql"


class PostgresDumps:
    """A service's databases dumped into ``<folder>/<service>/<name>.pgdump`` for its snapshot
    (the ``DatabaseDumps`` of ``providers.backup.restore``), and loaded back from a restored
    copy."""

    def __init__(self, settings: PostgresSettings, folder: Path) -> None:
        self._settings = settings
        self._folder = folder

    def folder(self, service_id: str) -> Path:
        return self._folder / service_id

    async def dump(self, service_id: str, databases: Sequence[str]) -> Path:
        folder = self.folder(service_id)
        await asyncio.to_thread(folder.mkdir, 0o700, True, True)
        for name in databases:
            await dump_database(name, folder / f"{name}.pgdump", self._settings)
        return folder

    async def load(self, dumps: Path, databases: Sequence[str]) -> None:
        for name in databases:
            source = dumps / f"{name}.pgdump"
            if not source.is_file():
                raise DatabaseDumpError(f"The snapshot holds no dump of database {name}.")
            await restore_database(name, source, self._settings)

    async def clean(self, service_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.folder(service_id), True)


async def dump_database(name: str, target_file: Path, settings: PostgresSettings) -> int:
    """Dump ``name`` in pg_dump's custom format; the file appears only when the dump is
    complete. Returns its size in bytes."""
    _check_name(name)
    partial = target_file.with_name(target_file.name + ".partial")
    args = ["--format=custom", "--file", str(partial), *_connection(settings), "--dbname", name]
    try:
        await _run(settings.pg_dump, args, settings, name)
        return await asyncio.to_thread(_publish, partial, target_file)
    finally:
        await asyncio.to_thread(partial.unlink, True)


async def restore_database(name: str, source_file: Path, settings: PostgresSettings) -> None:
    """Replace the objects of ``name`` by those in the dump, in one transaction, logged in as
    the database's owner: a failed restore leaves the database as it was."""
    _check_name(name)
    owner = await database_owner(name, settings)
    # The owner's own login: a password is offered only to the role it belongs to (the bot's
    # own database, logged in as its owner); postgres's is never offered for another role.
    own_password = settings.password_file if owner == settings.user else None
    as_owner = replace(settings, user=owner, password_file=own_password)
    args = [
        "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
        "--no-owner", "--no-privileges",
        *_connection(as_owner), "--dbname", name, "--", str(source_file),
    ]  # fmt: skip
    await _run(settings.pg_restore, args, as_owner, name)


# Superuser, or a role that can run programs, touch the server's files or grant itself that.
_OWNER = """SELECT r.rolname,
  r.rolsuper OR r.rolcreaterole
  OR pg_catalog.pg_has_role(r.oid, 'pg_execute_server_program', 'USAGE')
  OR pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'USAGE')
  OR pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE')
FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid = d.datdba
WHERE d.datname = :'db';
"""


async def database_owner(name: str, settings: PostgresSettings) -> str:
    """The role that owns ``name``, asked as ``settings.user``; refused when it is privileged."""
    _check_name(name)
    args = [
        "--no-psqlrc", "--tuples-only", "--no-align", "--field-separator=|",
        "-v", "ON_ERROR_STOP=1", "-v", f"db={name}", *_connection(settings), "--dbname", name,
    ]  # fmt: skip
    out = (await _run(settings.psql, args, settings, name, stdin=_OWNER.encode())).decode()
    owner, _, privileged = out.strip().partition("|")
    if not owner:
        raise DatabaseDumpError(f"Database {name} does not exist.")
    if privileged != "f" or not _NAME.match(owner):
        raise DatabaseDumpError(
            f"Database {name} is owned by a privileged role; Steward loads dumps only as a "
            "service's own role."
        )
    return owner


def _connection(settings: PostgresSettings) -> list[str]:
    return [
        "--host", settings.host, "--port", str(settings.port),
        "--username", settings.user, "--no-password",
    ]  # fmt: skip


def _check_name(name: str) -> None:
    # Without this, a name holding "=" would be read by libpq as a connection string.
    if not _NAME.match(name):
        raise DatabaseDumpError("That is not a database name.")


def _publish(partial: Path, target: Path) -> int:
    size = partial.stat().st_size
    os.replace(partial, target)
    return size


async def _run(
    tool: str, args: list[str], settings: PostgresSettings, name: str, stdin: bytes | None = None
) -> bytes:
    with _passfile(settings.password_file) as passfile:
        env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
        if passfile is not None:
            env["PGPASSFILE"] = str(passfile)
        try:
            proc = await asyncio.create_subprocess_exec(
                tool, *args,
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
        except OSError as exc:
            raise DatabaseDumpError(f"{tool} cannot be started: {exc.strerror}.") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), settings.timeout)
        except TimeoutError:
            raise DatabaseDumpError(f"{tool} timed out after {settings.timeout:g} s.") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if proc.returncode != 0:
        raise DatabaseDumpError(explain(err.decode(errors="replace"), tool, name))
    return out


def explain(stderr: str, tool: str, name: str) -> str:  # noqa: PLR0911 - one per cause
    if f'database "{name}" does not exist' in stderr:
        return f"Database {name} does not exist."
    if "password authentication failed" in stderr or "no password supplied" in stderr:
        return "PostgreSQL refused the password."
    if "Connection refused" in stderr or "could not connect" in stderr or "timeout" in stderr:
        return "PostgreSQL cannot be reached."
    if "pg_execute_server_program" in stderr or "must be superuser" in stderr:
        return f"The dump of database {name} asks for a superuser's rights; it was not loaded."
    if "permission denied" in stderr:
        return f"PostgreSQL refused access to database {name}."
    if "No space left on device" in stderr:
        return "The disk is full."
    return f"{Path(tool).name} failed for database {name}."


@contextlib.contextmanager
def _passfile(password_file: Path | None) -> Iterator[Path | None]:
    """A pgpass file that matches every server, readable by this user only."""
    if password_file is None:
        yield None
        return
    try:
        password = password_file.read_text().strip("\n")
    except OSError:
        raise DatabaseDumpError("The PostgreSQL password file cannot be read.") from None
    folder = Path(tempfile.mkdtemp(prefix="steward-pgpass-"))
    try:
        path = folder / "pgpass"
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"*:*:*:*:{escaped}\n")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)

"""pg_dump and pg_restore against the real PostgreSQL the suite starts (tests/conftest.py)."""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from providers.backup.pgdump import (
    DatabaseDumpError,
    PostgresSettings,
    dump_database,
    restore_database,
)
from tests.support.postgres import create_database
from tests.support.restic_fixtures import record_calls

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

_names = itertools.count(1)


def settings_for(admin_url: str, **overrides: Any) -> PostgresSettings:
    parts = urlsplit(admin_url)
    base = PostgresSettings(host=str(parts.hostname), port=int(parts.port or 5432), user="steward")
    return replace(base, **overrides)


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_file())


def is_there(path: Path) -> bool:
    return path.exists()


def owned_database(admin_url: str, name: str) -> str:
    """A database owned by a plain role of the same name, as NixOS's ensureDBOwnership makes
    it: the URL logs in as that role."""
    sql(admin_url, f'CREATE ROLE "{name}" LOGIN')
    create_database(admin_url, name)
    sql(admin_url, f'ALTER DATABASE "{name}" OWNER TO "{name}"')
    parts = urlsplit(admin_url)
    return f"postgresql+psycopg://{name}@{parts.hostname}:{parts.port}/{name}"


@pytest.fixture
def app_db(postgres_admin_url: str) -> tuple[str, str]:
    """A service's database with a table of three rows: (its name, its role's URL)."""
    name = f"app_dump_{next(_names)}"
    url = owned_database(postgres_admin_url, name)
    sql(url, "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
    sql(url, "INSERT INTO notes VALUES (1, 'first'), (2, 'second'), (3, 'third')")
    return name, url


async def test_a_dump_brings_deleted_rows_back(
    postgres_admin_url: str, app_db: tuple[str, str], tmp_path: Path
) -> None:
    name, url = app_db
    settings = settings_for(postgres_admin_url)
    dump = tmp_path / "app.dump"

    size = await dump_database(name, dump, settings)
    sql(url, "DELETE FROM notes WHERE id > 1")
    sql(url, "CREATE TABLE scratch (x int)")
    await restore_database(name, dump, settings)

    assert size == dump.stat().st_size > 0
    assert dump.read_bytes().startswith(b"PGDMP")  # the custom format's magic
    assert sql(url, "SELECT id, body FROM notes ORDER BY id") == [
        (1, "first"), (2, "second"), (3, "third"),
    ]  # fmt: skip
    assert files_in(tmp_path) == ["app.dump"]


async def test_the_password_reaches_libpq_through_a_private_passfile_only(
    postgres_admin_url: str,
    app_db: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test server trusts loopback, so the password is not checked there; what is checked
    # is how it travels.
    password_file = tmp_path / "pg-password"
    password_file.write_text("s3cr:et\\pw\n")
    monkeypatch.setenv("PGPASSWORD", "from-the-parent")
    calls = record_calls("pg_dump", tmp_path, monkeypatch)
    settings = settings_for(postgres_admin_url, password_file=password_file)

    await dump_database(app_db[0], tmp_path / "app.dump", settings)

    [call] = calls.calls()
    assert not [arg for arg in call["argv"] if "s3cr" in arg]
    assert "--no-password" in call["argv"]
    assert "PGPASSWORD" not in call["env"]
    assert call["pgpass"] == "*:*:*:*:s3cr\\:et\\\\pw\n"
    assert not is_there(Path(call["env"]["PGPASSFILE"]))  # deleted afterwards


async def test_failures_are_short_sentences(postgres_admin_url: str, tmp_path: Path) -> None:
    settings = settings_for(postgres_admin_url)
    with pytest.raises(DatabaseDumpError, match=r"^Database nothing_here does not exist\.$"):
        await dump_database("nothing_here", tmp_path / "x.dump", settings)
    with pytest.raises(DatabaseDumpError, match=r"^That is not a database name\.$"):
        await dump_database("host=evil dbname=x", tmp_path / "x.dump", settings)
    closed = settings_for(postgres_admin_url, port=1)
    with pytest.raises(DatabaseDumpError, match=r"^PostgreSQL cannot be reached\.$"):
        await dump_database("postgres", tmp_path / "x.dump", closed)
    assert files_in(tmp_path) == []


# Loading a row calls the check, the check runs a program: as a superuser, that is a shell.
EVIL = [
    "CREATE FUNCTION public.pwn(x int) RETURNS boolean LANGUAGE plpgsql"
    " AS $f$ BEGIN RETURN true; END $f$",
    "CREATE TABLE public.loot (line text)",
    "CREATE TABLE public.notes (id int CHECK (public.pwn(id)))",
    "INSERT INTO public.notes VALUES (1)",
    "CREATE OR REPLACE FUNCTION public.pwn(x int) RETURNS boolean LANGUAGE plpgsql AS $f$"
    " BEGIN EXECUTE 'COPY public.loot FROM PROGRAM ''touch MARKER'''; RETURN true; END $f$",
]


async def test_a_dump_that_runs_a_program_fails_under_the_services_role(
    postgres_admin_url: str, app_db: tuple[str, str], tmp_path: Path
) -> None:
    name, url = app_db
    marker = Path(tempfile.gettempdir()) / f"steward-pwned-{os.getpid()}-{next(_names)}"
    source = f"evil_src_{next(_names)}"
    source_url = create_database(postgres_admin_url, source)
    for statement in EVIL:
        sql(source_url, statement.replace("MARKER", str(marker)))
    settings = settings_for(postgres_admin_url)
    dump = tmp_path / "evil.dump"
    await dump_database(source, dump, settings)
    try:
        with pytest.raises(DatabaseDumpError, match="asks for a superuser's rights"):
            await restore_database(name, dump, settings)
        assert not marker.exists()
        assert sql(url, "SELECT id, body FROM notes ORDER BY id")[0] == (1, "first")  # as it was
        # The same dump loaded as the superuser, as the worker did before: the program runs.
        control = f"control_{next(_names)}"
        create_database(postgres_admin_url, control)
        parts = urlsplit(postgres_admin_url)
        control_args = ["pg_restore", "--host", str(parts.hostname), "--port", str(parts.port),
                        "--username", "steward", "--no-password", "--dbname", control,
                        "--single-transaction", str(dump)]  # fmt: skip
        # A control, run once to its end before the assertion.
        subprocess.run(control_args, check=True, capture_output=True, timeout=60)  # noqa: ASYNC221
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


async def test_a_database_a_superuser_owns_is_never_loaded(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    name = f"owned_by_root_{next(_names)}"
    url = create_database(postgres_admin_url, name)  # owned by the superuser "steward"
    sql(url, "CREATE TABLE notes (id int)")
    settings = settings_for(postgres_admin_url)
    await dump_database(name, tmp_path / "x.dump", settings)
    with pytest.raises(DatabaseDumpError, match="owned by a privileged role"):
        await restore_database(name, tmp_path / "x.dump", settings)
    with pytest.raises(DatabaseDumpError, match="does not exist"):
        await restore_database("nothing_here", tmp_path / "x.dump", settings)

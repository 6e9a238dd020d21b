"""Schema migrations: ensure_schema, the Alembic head, drift against the models, and the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, String, inspect

from bot.errors import DatabaseError
from bot.storage.database import SCHEMA_HEAD, Database, alembic_config
from bot.storage.models import metadata as models_metadata

TABLES = {
    "alembic_version", "audit_log", "confirmations", "jobs", "kv", "samples", "totp_failures",
    "totp_secrets",
}  # fmt: skip


@pytest.fixture
def empty(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _differences(conn: Connection, metadata: MetaData) -> list[Any]:
    # compare_type is on by default in Alembic >= 1.12; it is set here so that an older
    # Alembic would not silently skip type drift. UTCDateTime needs no hook: Alembic compares
    # a TypeDecorator by its ``impl`` (DateTime), which is what the migration created.
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def test_an_empty_database_is_migrated_once(empty: Database) -> None:
    assert empty.revision() is None

    assert empty.ensure_schema() is True
    assert empty.ensure_schema() is False

    assert empty.revision() == SCHEMA_HEAD
    with empty.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == TABLES


def test_schema_head_names_the_newest_migration() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())

    assert scripts.get_heads() == [SCHEMA_HEAD], "bump SCHEMA_HEAD with every new migration"
    assert scripts.get_current_head() == SCHEMA_HEAD


def test_the_migrated_schema_matches_the_models(empty: Database) -> None:
    empty.ensure_schema()

    with empty.engine.connect() as conn:
        assert _differences(conn, models_metadata) == []


def test_the_schema_comparison_notices_drift(empty: Database) -> None:
    # Guards the test above: the comparison itself must see a new column and a changed type.
    empty.ensure_schema()
    drifted = MetaData()
    for table in models_metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["jobs"].append_column(Column("owner", String(8), nullable=True))
    drifted.tables["kv"].c["key"].type = String(64)

    with empty.engine.connect() as conn:
        kinds = sorted(diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in
                       _differences(conn, drifted))  # fmt: skip

    assert kinds == ["add_column", "modify_type"]


def test_migrations_go_down_to_nothing_and_up_again(empty: Database) -> None:
    empty.ensure_schema()

    with empty.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with empty.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    assert empty.revision() is None

    assert empty.ensure_schema() is True
    assert empty.revision() == SCHEMA_HEAD


# -- the command line -------------------------------------------------------------------------


def _steward(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("STEWARD_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,  # away from any .env of the developer
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_steward_db_upgrade_migrates_and_prints_the_revision(
    database_url: str, tmp_path: Path
) -> None:
    result = _steward("db", "upgrade", cwd=tmp_path, STEWARD_DATABASE_URL=database_url)

    assert (result.returncode, result.stdout) == (0, f"{SCHEMA_HEAD}\n"), result.stderr
    db = Database(database_url)
    try:
        assert db.revision() == SCHEMA_HEAD
        assert db.ensure_schema() is False
    finally:
        db.dispose()


def test_steward_db_current_prints_the_revision(empty: Database, tmp_path: Path) -> None:
    empty.ensure_schema()

    result = _steward("db", "current", cwd=tmp_path, STEWARD_DATABASE_URL=empty.url)

    assert (result.returncode, result.stdout) == (0, f"{SCHEMA_HEAD}\n"), result.stderr


def test_steward_db_current_on_a_new_database_says_empty_and_changes_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    result = _steward("db", "current", cwd=tmp_path, STEWARD_DATABASE_URL=sqlite_url)

    assert (result.returncode, result.stdout) == (0, "empty\n"), result.stderr
    db = Database(sqlite_url)
    try:
        assert db.revision() is None
    finally:
        db.dispose()


def test_the_default_database_lives_in_the_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"

    result = _steward("db", "upgrade", cwd=tmp_path, STEWARD_STATE_DIR=str(state))

    assert (result.returncode, result.stdout) == (0, f"{SCHEMA_HEAD}\n"), result.stderr
    assert (state / "steward.db").is_file()
    assert state.stat().st_mode & 0o777 == 0o700


def test_ensure_schema_at_head_does_not_load_alembic(sqlite_db: Database, tmp_path: Path) -> None:
    # Alembic costs memory on a small server: a database already at head must not import it.
    probe = (
        "import sys\n"
        "from bot.storage.database import Database\n"
        f"migrated = Database({sqlite_db.url!r}).ensure_schema()\n"
        "print(migrated, 'alembic' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, "False False\n"), result.stderr


def test_the_bot_migrates_a_new_database_in_a_child_and_never_imports_alembic(
    tmp_path: Path,
) -> None:
    """A first start: the schema is behind, so ``steward db upgrade`` runs as a child; the
    bot's own process ends up with the schema at head and without Alembic in memory."""
    probe = (
        "import sys\n"
        "from bot.app import build_app\n"
        "from bot.config import load_settings\n"
        "app = build_app(load_settings(), demo=True)\n"
        "print(app.db.revision(), 'alembic' in sys.modules)\n"
        "app.close()\n"
    )
    state = tmp_path / "state"
    clean = {key: value for key, value in os.environ.items() if not key.startswith("STEWARD_")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**clean, "STEWARD_STATE_DIR": str(state)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert (result.returncode, result.stdout) == (0, f"{SCHEMA_HEAD} False\n"), result.stderr
    assert (state / "steward.db").is_file()


def test_a_migration_that_fails_in_the_child_is_its_last_line(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child is `python -m bot db upgrade`; here an interpreter that fails as it would on a
    # full disk, after some noise on stderr.
    child = tmp_path / "python"
    child.write_text(
        "#!/bin/sh\necho 'INFO alembic starting' >&2\n"
        "echo 'steward: cannot use the database: database or disk is full' >&2\nexit 2\n"
    )
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))
    db = Database(sqlite_url)
    try:
        with pytest.raises(DatabaseError) as caught:
            db.ensure_schema_apart()
        assert db.revision() is None
    finally:
        db.dispose()
    assert str(caught.value) == "cannot use the database: database or disk is full"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STATE, URL = "STEWARD_STATE_DIR", "STEWARD_DATABASE_URL"
NOTHING_LISTENING = "postgresql://steward@127.0.0.1:{port}/steward"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        (STATE, "{tmp}/a-file/state", "cannot create the state folder"),
        (URL, "nosuchdriver://db/steward", "cannot use STEWARD_DATABASE_URL"),
        (URL, "this is not a url", "cannot use STEWARD_DATABASE_URL"),
        (URL, NOTHING_LISTENING, "cannot use the database"),
    ],
    ids=["state-folder-under-a-file", "bogus-driver", "not-a-url", "nothing-listening"],
)
def test_steward_db_upgrade_on_an_unusable_database_stops_with_one_line(
    tmp_path: Path, variable: str, value: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    value = value.format(tmp=tmp_path, port=_closed_port())

    result = _steward("db", "upgrade", cwd=tmp_path, **{variable: value})

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"steward: {reason}"), lines[0]


@pytest.mark.parametrize("call", [Database.revision, Database.ensure_schema, Database.upgrade])
def test_an_unreachable_database_raises_a_one_line_database_error(
    call: Callable[[Database], object],
) -> None:
    db = Database(NOTHING_LISTENING.format(port=_closed_port()))
    try:
        with pytest.raises(DatabaseError, match=r"^cannot use the database: .*refused") as caught:
            call(db)
    finally:
        db.dispose()
    assert "\n" not in str(caught.value)


def test_a_state_folder_that_cannot_be_created_raises_a_database_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")

    with pytest.raises(DatabaseError, match="cannot create the state folder"):
        Database(f"sqlite:///{tmp_path / 'a-file' / 'state' / 'steward.db'}")

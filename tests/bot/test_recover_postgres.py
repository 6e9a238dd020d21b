"""``steward recover`` of a bot whose own database is PostgreSQL, with real restic and a real
PostgreSQL server whose roles log in with a password (scram-sha-256 on loopback): the state is
in the database, Steward's own snapshot holds its ``pg_dump``, the database is wiped (a new
server's empty one), and ``steward recover`` brings the rows back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import create_engine, text

from providers.backup.base import SELF
from providers.backup.restic import ResticSettings
from tests.bot.test_recover import Server, build_old_server
from tests.support.postgres import postgres_server
from tests.support.restic_fixtures import copy_of

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]
# Characters a URL must quote: the password reaches libpq through a passfile, never argv.
PASSWORD = "s3cret/with@odd:chars"


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """The superuser ``steward`` is trusted; every other role gives its password."""
    hba = ["host all steward 127.0.0.1/32 trust", "host all all 127.0.0.1/32 scram-sha-256"]
    with postgres_server(hba) as url:
        yield url


def sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    rows: list[tuple[object, ...]] = []
    try:
        with engine.connect() as conn:
            for statement in statements:
                result = conn.execute(text(statement))
                rows = [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()
    return rows


def fresh_database(admin_url: str) -> None:
    """What NixOS's ensureDatabases and ensureDBOwnership leave on a new server."""
    sql(admin_url, "DROP DATABASE IF EXISTS stewardbot WITH (FORCE)",
        "CREATE DATABASE stewardbot OWNER stewardbot")  # fmt: skip


@pytest.fixture
def bot_url(admin_url: str) -> str:
    sql(admin_url, "DROP DATABASE IF EXISTS stewardbot WITH (FORCE)",
        "DROP ROLE IF EXISTS stewardbot",
        f"CREATE ROLE stewardbot LOGIN PASSWORD '{PASSWORD}'")  # fmt: skip
    fresh_database(admin_url)
    parts = urlsplit(admin_url)
    return (f"postgresql+psycopg://stewardbot:{quote(PASSWORD, safe='')}@{parts.hostname}:"
            f"{parts.port}/stewardbot")  # fmt: skip


class PostgresServer(Server):
    def __init__(self, root: Path, repo: ResticSettings, url: str) -> None:
        super().__init__(root, repo)
        self.url = url

    def env(self) -> dict[str, str]:
        return {**super().env(), "STEWARD_DATABASE_URL": self.url}


@pytest.fixture
def repo(tmp_path: Path, empty_repo: ResticSettings) -> ResticSettings:
    return copy_of(empty_repo, tmp_path)


def audit_commands(url: str) -> list[str]:
    return [str(row[0]) for row in sql(url, "SELECT command FROM audit_log ORDER BY id")]


def test_a_bot_on_postgresql_comes_back_with_its_rows(
    tmp_path: Path, repo: ResticSettings, admin_url: str, bot_url: str
) -> None:
    old = PostgresServer(tmp_path / "machine", repo, bot_url)
    build_old_server(old)
    said = old.steward("console", stdin="/audit\n/backups\n")
    assert said.returncode == 0, said.stderr
    before = audit_commands(bot_url)
    assert {"audit", "backups"} <= set(before)
    for instance in ("app:scheduled", f"{SELF}:scheduled"):
        done = old.steward("worker", "backup", instance)
        assert done.returncode == 0, done.stderr

    # A new server: an empty state folder and the empty database NixOS makes for the bot.
    shutil.rmtree(old.state)
    old.state.mkdir()
    fresh_database(admin_url)
    assert sql(admin_url.rsplit("/", 1)[0] + "/stewardbot",
               "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]  # fmt: skip

    recovered = old.steward("recover", "--yes")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "  database → PostgreSQL database stewardbot" in recovered.stdout
    after = audit_commands(bot_url)
    assert after[: len(before)] == before
    assert "recover" in after[len(before) :]
    assert PASSWORD not in recovered.stdout + recovered.stderr
    owners = sql(bot_url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [("stewardbot",)]

    shown = old.steward("console", stdin="/audit 20\n")
    assert shown.returncode == 0, shown.stderr
    assert "/backups → ok" in shown.stdout
    assert "recover app" in shown.stdout

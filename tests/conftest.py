"""Shared fixtures: databases (SQLite and a real PostgreSQL), a clock, and a wired engine."""

from __future__ import annotations

import itertools
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.storage.database import Database
from bot.storage.stores import (
    SqlAuditLog,
    SqlConfirmationStore,
    SqlJobStore,
    SqlKeyValue,
    SqlSamples,
)
from handlers.catalog import build_registry
from handlers.core.access import AccessPolicy, StrangerLimiter
from handlers.core.context import Deps, Site, SystemPolicy
from handlers.core.engine import Engine
from handlers.core.job_host import EngineSettings
from handlers.core.messages import Actor, ChatRef, Command, Press
from handlers.core.spec import Role
from providers.backup.datajobs import LocalDataJobs
from providers.backup.restore import Restorer
from providers.demo import DEMO_DOMAIN, DemoServer
from tests.support.chat import RecordingOutbox, Sent
from tests.support.postgres import create_database, postgres_server

pytest_plugins = ["tests.support.synapse_fixture", "tests.support.knot", "tests.support.home_fakes"]

_counter = itertools.count()

ADMIN = Actor("telegram", "1001", "Alice")
ADMIN2 = Actor("telegram", "1002", "Bob")
OPERATOR = Actor("telegram", "2001", "Olga")
VIEWER = Actor("telegram", "3001", "Victor")
STRANGER = Actor("telegram", "6666", "Mallory")
CHAT = ChatRef("telegram", "42")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'steward.db'}"
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    return create_database(admin_url, f"t{next(_counter)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'steward.db'}"


def _migrated(url: str) -> Iterator[Database]:
    database = Database(url)
    database.ensure_schema()
    yield database
    database.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    yield from _migrated(database_url)


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    yield from _migrated(sqlite_url)


class FakeClock:
    """Wall-clock time that tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    """A real engine on a real database, with the demo server and a recording chat."""

    engine: Engine
    outbox: RecordingOutbox
    clock: FakeClock
    server: DemoServer
    db: Database

    def command(self, text: str, actor: Actor = ADMIN, age: timedelta = timedelta()) -> Command:
        name, *args = text.lstrip("/").split()
        return Command(name, tuple(args), actor, CHAT, self.clock() - age, "m1")

    async def say(self, text: str, actor: Actor = ADMIN, age: timedelta = timedelta()) -> str:
        before = len(self.outbox.messages)
        await self.engine.handle_command(self.command(text, actor, age))
        return "\n".join(sent.current.text for sent in self.outbox.messages[before:])

    async def press(self, button: int, actor: Actor = ADMIN, message: str | None = None) -> str:
        prompt = self.outbox.by_id(message) if message else self.last_prompt()
        buttons = prompt.current.buttons or prompt.reply.buttons
        action = buttons[button - 1].action
        return await self.engine.handle_press(
            Press(action, actor, prompt.chat, self.clock(), prompt.message_id)
        )

    def last_prompt(self) -> Sent:
        """The newest message that shows buttons now (a Keep offer is an edit), else the newest
        that had them (to press a closed prompt again)."""
        showing = [s for s in self.outbox.messages if s.current.buttons]
        if showing:
            return showing[-1]
        return next(s for s in reversed(self.outbox.messages) if s.reply.buttons)


def make_harness(
    db: Database,
    *,
    two_person: frozenset[str] = frozenset(),
    confirm: frozenset[str] = frozenset(),
    step_seconds: float = 0.0,
) -> Harness:
    server = DemoServer.create(step_seconds=step_seconds)
    clock = FakeClock()
    server.backups.clock = clock  # snapshots are made at the engine's time
    outbox = RecordingOutbox()
    # /restore tests give it a data folder of its own (tests/handlers/test_restore_command.py).
    # Made only if a restore runs; those tests give it a folder of their own.
    work = Path(tempfile.gettempdir()) / f"steward-restore-{secrets.token_hex(8)}"
    deps = Deps(
        host=server.host,
        services=server.services,
        catalogue=server.catalogue,
        audit=SqlAuditLog(db),
        registry=build_registry(),
        timezone=UTC,
        nixos=server.nixos,
        desired=server.desired,
        rebuilds=server.rebuilds,
        notes=SqlKeyValue(db),
        policy=SystemPolicy(keep_minutes=10, poll_seconds=0.01, root_keys="open"),
        cloud=server.cloud,
        storage=server.storage,
        dns=server.dns,
        backups=server.backups,
        data_jobs=LocalDataJobs(server.backups, Restorer(server.backups, server.services, work)),
        samples=SqlSamples(db),
        demo=server.host,
        site=Site(domain=DEMO_DOMAIN),
    )
    access = AccessPolicy.from_lists(
        admins=[ADMIN.user_id, ADMIN2.user_id],
        operators=[OPERATOR.user_id],
        viewers=[VIEWER.user_id],
        console_role=Role.ADMIN,
    )
    engine = Engine(
        deps=deps,
        access=access,
        confirmations=SqlConfirmationStore(db),
        jobs=SqlJobStore(db),
        outbox=outbox,
        settings=EngineSettings(two_person=two_person, confirm=confirm, progress_interval=0.0),
        clock=clock,
        limiter=StrangerLimiter(),
    )
    return Harness(engine, outbox, clock, server, db)


@pytest.fixture
def harness(sqlite_db: Database) -> Harness:
    return make_harness(sqlite_db)

"""The whole path with the real adapters: the engine on a real database, the desired-state
file on disk, and systemctl, journalctl and nixos-rebuild from tests/support/fakebin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from bot.storage.database import Database
from bot.storage.stores import SqlAuditLog, SqlConfirmationStore, SqlJobStore, SqlKeyValue
from handlers.catalog import build_registry
from handlers.core.access import AccessPolicy
from handlers.core.context import Deps, SystemPolicy
from handlers.core.engine import Engine
from handlers.core.job_host import EngineSettings
from handlers.core.messages import Command, Press
from handlers.core.records import JobState
from providers.host.catalogue import ServiceCatalogue, ServiceInfo
from providers.host.metrics import PsutilHost
from providers.host.systemd import SystemctlServiceManager
from providers.nixos.base import REBUILD_UNIT
from providers.nixos.desired import DesiredStateFile
from providers.nixos.rebuild import SystemdRebuilds
from providers.nixos.system import NixosRebuildSystem
from tests.conftest import ADMIN, CHAT, FakeClock
from tests.support.chat import RecordingOutbox
from tests.support.fake_system import FakeSystem


class Bot:
    """One run of the bot: a new engine on the same database, outbox and fake system."""

    def __init__(  # noqa: PLR0917
        self, db: Database, fake: FakeSystem, desired: Path, catalogue: ServiceCatalogue,
        outbox: RecordingOutbox, clock: FakeClock,
    ) -> None:  # fmt: skip
        self.outbox = outbox
        self.clock = clock
        deps = Deps(
            host=PsutilHost(),
            services=SystemctlServiceManager(),
            catalogue=catalogue,
            audit=SqlAuditLog(db),
            registry=build_registry(),
            timezone=UTC,
            nixos=NixosRebuildSystem(fake.root),
            desired=DesiredStateFile(desired),
            rebuilds=SystemdRebuilds(),
            notes=SqlKeyValue(db),
            policy=SystemPolicy(keep_minutes=10, poll_seconds=0.05, root_keys="open"),
        )
        self.engine = Engine(
            deps=deps,
            access=AccessPolicy.from_lists([ADMIN.user_id], [], []),
            confirmations=SqlConfirmationStore(db),
            jobs=SqlJobStore(db),
            outbox=outbox,
            settings=EngineSettings(progress_interval=0.0),
            clock=clock,
        )

    async def say(self, text: str) -> None:
        name, *args = text.lstrip("/").split()
        await self.engine.handle_command(Command(name, tuple(args), ADMIN, CHAT, self.clock()))

    async def press(self, button: int) -> str:
        prompt = [s for s in self.outbox.messages if s.current.buttons][-1]
        action = prompt.current.buttons[button - 1].action
        press = Press(action, ADMIN, CHAT, self.clock(), prompt.message_id)
        return await self.engine.handle_press(press)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    system = FakeSystem(tmp_path)
    system.install(monkeypatch)
    return system


class Bots:
    """Starts the bot again and again on the same database, chat and disk."""

    def __init__(self, db: Database, fake: FakeSystem, tmp_path: Path) -> None:
        self.args = (
            db, fake, tmp_path / "desired-state.json",
            ServiceCatalogue([ServiceInfo("forgejo", "Forgejo", "Git hosting",
                                          ("forgejo.service",), ("/var/lib/forgejo",))]),
            RecordingOutbox(), FakeClock(),
        )  # fmt: skip
        self.started: list[Bot] = []

    def start(self) -> Bot:
        self.started.append(Bot(*self.args))
        return self.started[-1]

    def kill(self, bot: Bot) -> None:
        for task in list(bot.engine.jobs._tasks):
            task.cancel()


@pytest.fixture
def bots(sqlite_db: Database, fake: FakeSystem, tmp_path: Path) -> Iterator[Bots]:
    made = Bots(sqlite_db, fake, tmp_path)
    yield made
    for bot in made.started:
        made.kill(bot)


async def test_enable_end_to_end_with_keep(fake: FakeSystem, bots: Bots, tmp_path: Path) -> None:
    bot = bots.start()
    before = fake.current_generation()
    fake.stage_next(new_units=["forgejo.service"])
    fake.hold_rebuild()  # in its build phase until the chat has shown it, however slow the machine

    await bot.say("/enable forgejo")
    assert "services.forgejo.enable" in bot.outbox.last.current.text
    await bot.press(1)
    for _ in range(2000):
        building = [s for s in bot.outbox.messages if "Building" in s.current.text]
        if building:
            break
        await asyncio.sleep(0.01)
    (job_message,) = building
    fake.release_rebuild()
    assert await bot.engine.wait_for_jobs(20)

    on_disk = json.loads((tmp_path / "desired-state.json").read_text())
    assert on_disk["services"]["forgejo"] == {"enable": True}
    assert ["systemctl", "start", "--no-block", "--", REBUILD_UNIT] in fake.calls("systemctl")
    assert job_message is bot.outbox.last
    assert f"Generation {before} → <b>{before + 1}</b>" in job_message.current.text
    assert fake.current_generation() == before + 1
    assert fake.unit("forgejo.service")["ActiveState"] == "active"

    assert await bot.press(1) == "Done."
    assert f"Generation {before + 1} is kept" in bot.outbox.last.current.text
    assert fake.current_generation() == before + 1


async def test_a_failed_rebuild_puts_the_desired_state_file_back(
    fake: FakeSystem, bots: Bots, tmp_path: Path
) -> None:
    bot = bots.start()
    path = tmp_path / "desired-state.json"
    fake.fail_rebuild("error: undefined variable 'forgejoo'")
    await bot.say("/enable forgejo")
    await bot.press(1)
    assert await bot.engine.wait_for_jobs(20)
    text = bot.outbox.last.current.text
    assert "failed" in text
    assert "put back as it was" in text
    assert "undefined variable &#x27;forgejoo&#x27;" in text
    # The first write created the file; putting it back leaves the empty state.
    assert json.loads(path.read_text())["services"] == {}


async def test_no_keep_rolls_back_through_the_rollback_unit(fake: FakeSystem, bots: Bots) -> None:
    bot = bots.start()
    before = fake.current_generation()
    await bot.say("/rebuild")
    await bot.press(1)
    assert await bot.engine.wait_for_jobs(20)
    assert fake.current_generation() == before + 1
    bot.clock.advance(minutes=10, seconds=1)
    assert await bot.engine.expire_confirmations() == 1
    assert await bot.engine.wait_for_jobs(20)
    assert fake.current_generation() == before
    assert ["systemctl", "start", "--no-block", "--", f"steward-rollback@{before}.service"] in (
        fake.calls("systemctl")
    )


async def test_a_bot_killed_mid_rebuild_reports_the_outcome_in_the_same_message(
    fake: FakeSystem, bots: Bots
) -> None:
    first = bots.start()
    before = fake.current_generation()
    fake.hold_rebuild()
    await first.say("/rebuild")
    await first.press(1)
    # Wait until the job's message shows the build running and the job's record holds that
    # message, then kill the bot's tasks. (Killed between the two, a bot cannot know the
    # message again: the next run reports in a new one.)
    for _ in range(2000):
        (job,) = await first.engine.jobs.store.unfinished()
        if "Building" in first.outbox.last.current.text and job.message_id is not None:
            break
        await asyncio.sleep(0.01)
    job_message = first.outbox.last
    assert "Building" in job_message.current.text
    assert job.message_id == job_message.message_id
    bots.kill(first)
    await asyncio.sleep(0.05)
    assert fake.unit(REBUILD_UNIT)["ActiveState"] == "activating"  # the unit runs on
    fake.release_rebuild()

    second = bots.start()
    assert await second.engine.jobs.reattach() == 1
    assert await second.engine.wait_for_jobs(20)
    assert f"Generation {before} → <b>{before + 1}</b>" in job_message.current.text
    assert [b.label for b in job_message.current.buttons] == ["Keep", "Roll back now"]
    jobs = await second.engine.jobs.store.unfinished()
    assert jobs == []
    starts = [c for c in fake.calls("systemctl") if c[1] == "start"]
    assert len(starts) == 1
    finished = await second.engine.jobs.store.get(1)
    assert finished is not None
    assert finished.state is JobState.SUCCEEDED


async def test_forty_services_take_one_systemctl_show(
    fake: FakeSystem, sqlite_db: Database
) -> None:
    services = []
    for index in range(40):
        units = (f"svc{index}.service", f"svc{index}-worker.service")
        for unit in units:
            fake.add_unit(unit)
        services.append(ServiceInfo(f"svc{index}", f"Service {index}", "", units))
    bot = Bot(sqlite_db, fake, fake.dir / "d.json", ServiceCatalogue(services),
              RecordingOutbox(), FakeClock())  # fmt: skip
    fake.set_unit("svc7-worker.service", failed=True)
    fake.clear_calls()
    await bot.say("/services")
    text = bot.outbox.last.current.text
    assert text.count("active") == 39
    assert "svc7</b> failed (svc7-worker.service)" in text
    shows = fake.calls("systemctl")
    assert len(shows) == 1
    assert shows[0][1] == "show"
    assert len([arg for arg in shows[0] if arg.endswith(".service")]) == 80

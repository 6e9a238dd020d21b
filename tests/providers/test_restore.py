"""Restores with real restic on a local repository: the steps, a failure at each step, and a
crash at each step followed by recovery. Whatever happens, each folder ends up holding either
all of the old data or all of the snapshot's, and the units run again."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from providers.backup.base import BackupError, BackupReason, RestoreError, RestorePlan
from providers.backup.pgdump import PostgresDumps
from providers.backup.restic import ResticBackupEngine, ResticSettings
from providers.backup.restore import Restorer
from tests.providers.test_pgdump import owned_database, settings_for, sql
from tests.support.restic_fixtures import copy_of, tree_digests

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(120)

UNITS = ("app.service", "app-worker.service")


class Crash(BaseException):
    """Stands for the bot being killed: nothing in the restore may catch it."""


class Units:
    """systemd for the restore: records stops and starts, fails or crashes on request."""

    def __init__(self, fail_stop: str | None = None) -> None:
        self.calls: list[str] = []
        self.running = set(UNITS)
        self.fail_stop = fail_stop

    async def stop(self, unit: str) -> None:
        if unit == self.fail_stop:
            raise BackupError(f"{unit} would not stop.")
        self.calls.append(f"stop {unit}")
        self.running.discard(unit)

    async def start(self, unit: str) -> None:
        self.calls.append(f"start {unit}")
        self.running.add(unit)


class Dumps:
    """Database dumps as plain files (the PostgreSQL path is covered in test_pgdump.py)."""

    def __init__(self, root: Path, fail_load: bool = False) -> None:
        self.root = root
        self.fail_load = fail_load
        self.live: dict[str, bytes] = {}

    def folder(self, service_id: str) -> Path:
        return self.root / service_id

    async def dump(self, service_id: str, databases: Sequence[str]) -> Path:
        folder = self.folder(service_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name in databases:
            (folder / f"{name}.pgdump").write_bytes(self.live[name])
        return folder

    async def load(self, dumps: Path, databases: Sequence[str]) -> None:
        if self.fail_load:
            raise BackupError("pg_restore failed for database app.")
        for name in databases:
            self.live[name] = (dumps / f"{name}.pgdump").read_bytes()

    async def clean(self, service_id: str) -> None:
        shutil.rmtree(self.folder(service_id), ignore_errors=True)


def fill(folder: Path, tag: str) -> None:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(f"{tag} a\n")
    (folder / "sub" / "b.bin").write_bytes(tag.encode() * 5000)
    (folder / f"only-{tag}.txt").write_text(tag)


class Setup:
    def __init__(self, root: Path, settings: ResticSettings) -> None:
        self.engine = ResticBackupEngine(settings)
        self.data = root / "srv" / "app-data"
        self.media = root / "srv" / "app-media"
        self.units = Units()
        self.dumps = Dumps(root / "dumps")
        self.dumps.live["app"] = b"database as backed up"
        self.work = root / "state" / "restore"
        fill(self.data, "old")
        fill(self.media, "old")

    def restorer(self, **overrides: object) -> Restorer:
        units = overrides.get("units", self.units)
        dumps = overrides.get("dumps", self.dumps)
        return Restorer(self.engine, units, self.work, dumps=dumps)  # type: ignore[arg-type]

    async def snapshot(self) -> str:
        """Back up the 'old' state with its dump, then change everything to 'new'."""
        dumps = await self.dumps.dump("app", ["app"])
        result = await self.engine.backup(
            "app", [self.data, self.media, dumps], BackupReason.MANUAL
        )
        self.expected = {p: tree_digests(p) for p in (self.data, self.media)}
        shutil.rmtree(self.data)
        shutil.rmtree(self.media)
        fill(self.data, "new")
        fill(self.media, "new")
        self.dumps.live["app"] = b"database changed since"
        self.current = {p: tree_digests(p) for p in (self.data, self.media)}
        return result.snapshot_id

    def plan(self, snapshot: str) -> RestorePlan:
        return RestorePlan("app", snapshot, (str(self.data), str(self.media)), UNITS, ("app",))

    def state(self) -> dict[Path, dict[str, str]]:
        return {p: tree_digests(p) for p in (self.data, self.media)}

    def leftovers(self) -> list[str]:
        names = [p.name for p in self.data.parent.iterdir()]
        return sorted(n for n in names if n.startswith("."))


@pytest.fixture
def setup(tmp_path: Path, empty_repo: ResticSettings) -> Setup:
    return Setup(tmp_path, copy_of(empty_repo, tmp_path))


async def steps_of(restorer: Restorer, plan: RestorePlan) -> list[str]:
    seen: list[str] = []

    async def step(text: str) -> None:
        seen.append(text)

    await restorer.restore(plan, step)
    return seen


async def test_a_restore_takes_a_safety_snapshot_swaps_verified_data_and_restarts(
    setup: Setup,
) -> None:
    snapshot = await setup.snapshot()
    steps = await steps_of(setup.restorer(), setup.plan(snapshot))
    assert setup.state() == setup.expected
    assert setup.dumps.live["app"] == b"database as backed up"
    assert setup.units.calls == [f"stop {u}" for u in UNITS] + [f"start {u}" for u in UNITS]
    assert setup.leftovers() == []
    assert not list(setup.work.glob("*.json"))
    assert steps[0].startswith("Taking a safety snapshot")
    assert any("with verification" in s for s in steps)
    # The safety snapshot holds the data as it was just before, and undoes the restore.
    safety = [
        s for s in await setup.engine.snapshots("app") if s.reason is BackupReason.PRE_RESTORE
    ]
    assert len(safety) == 1
    plan = RestorePlan("app", safety[0].id, (str(setup.data), str(setup.media)), UNITS)
    await steps_of(setup.restorer(), plan)
    assert setup.state() == setup.current


async def test_a_folder_missing_today_is_created_and_counts_as_restored(setup: Setup) -> None:
    snapshot = await setup.snapshot()
    shutil.rmtree(setup.media)
    await steps_of(setup.restorer(), setup.plan(snapshot))
    assert setup.state() == setup.expected


@pytest.mark.parametrize("where", ["stop", "stage", "swap", "databases"])
async def test_a_failure_at_any_step_puts_the_old_data_back_and_restarts(
    setup: Setup, where: str
) -> None:
    snapshot = await setup.snapshot()
    units, dumps = setup.units, setup.dumps
    plan = setup.plan(snapshot)
    if where == "stop":
        units = Units(fail_stop=UNITS[1])
    elif where == "stage":
        elsewhere = str(setup.data.parent / "not-in-the-snapshot")
        plan = RestorePlan("app", snapshot, (str(setup.data), elsewhere), UNITS)
    elif where == "swap":
        # Something sits where the second folder's old data would go.
        (setup.media.parent / f".{setup.media.name}.steward-old").mkdir()
    else:
        dumps = Dumps(setup.dumps.root, fail_load=True)
        dumps.live = dict(setup.dumps.live)
    restorer = setup.restorer(units=units, dumps=dumps)
    with pytest.raises(RestoreError) as failed:
        await steps_of(restorer, plan)
    assert failed.value.kept_old
    assert failed.value.safety_snapshot
    assert setup.state() == setup.current
    assert units.running == set(UNITS)
    assert dumps.live["app"] == b"database changed since"
    expected_leftovers = [".app-media.steward-old"] if where == "swap" else []
    assert setup.leftovers() == expected_leftovers
    assert not list(setup.work.glob("*.json"))


async def test_a_failed_safety_snapshot_changes_nothing(setup: Setup) -> None:
    snapshot = await setup.snapshot()
    # Without read permission on a file restic cannot back it up... but root reads anything,
    # so the repository itself goes away instead.
    shutil.rmtree(setup.engine._settings.repository)
    with pytest.raises(RestoreError, match="safety snapshot failed") as failed:
        await steps_of(setup.restorer(), setup.plan(snapshot))
    assert failed.value.kept_old
    assert setup.units.calls == []
    assert setup.state() == setup.current


STEPS = ["Stopping", "Restoring", "Swapping", "Loading", "Starting"]


@pytest.mark.parametrize("crash_at", STEPS)
async def test_a_crash_at_any_step_is_put_right_by_recover(setup: Setup, crash_at: str) -> None:
    snapshot = await setup.snapshot()

    async def step(text: str) -> None:
        if text.startswith(crash_at):
            raise Crash

    with pytest.raises(Crash):
        await setup.restorer().restore(setup.plan(snapshot), step)
    assert list(setup.work.glob("*.json"))  # the journal says a restore was under way
    assert setup.restorer().interrupted() == ["app"]
    with pytest.raises(BackupError, match="interrupted"):
        await steps_of(setup.restorer(), setup.plan(snapshot))

    async def quiet(_text: str) -> None:
        pass

    restored, said = await setup.restorer().recover("app", quiet)
    assert restored is (crash_at == "Starting")
    assert setup.state() == (setup.expected if restored else setup.current)
    assert setup.units.running == set(UNITS), said
    assert setup.leftovers() == []
    assert setup.restorer().interrupted() == []


async def test_a_crash_between_the_two_renames_of_a_swap_is_put_right(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live folder is moved aside and the process dies before the staged one moves in."""
    snapshot = await setup.snapshot()
    renames: list[str] = []
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        renames.append(str(dst))
        if len(renames) == 2:  # data: live -> old done; the staged data never moves in
            raise Crash
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)

    async def quiet(_text: str) -> None:
        pass

    with pytest.raises(Crash):
        await setup.restorer().restore(setup.plan(snapshot), quiet)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not setup.data.exists()
    restored, _ = await setup.restorer().recover("app", quiet)
    assert not restored
    assert setup.state() == setup.current
    assert setup.leftovers() == []


@pytest.mark.postgres
async def test_a_service_and_its_postgresql_database_come_back_together(
    tmp_path: Path, empty_repo: ResticSettings, postgres_admin_url: str
) -> None:
    """Real restic, real PostgreSQL: the dump travels in the snapshot and is loaded back."""
    name = "restore_app"
    url = owned_database(postgres_admin_url, name)  # loaded back as its own role
    sql(url, "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
    sql(url, "INSERT INTO notes VALUES (1, 'kept'), (2, 'also kept')")
    engine = ResticBackupEngine(copy_of(empty_repo, tmp_path))
    dumps = PostgresDumps(settings_for(postgres_admin_url), tmp_path / "state" / "dumps")
    data = tmp_path / "srv" / "app"
    fill(data, "old")
    paths = [data, await dumps.dump("app", [name])]
    snapshot = (await engine.backup("app", paths, BackupReason.MANUAL)).snapshot_id
    await dumps.clean("app")
    assert not dumps.folder("app").exists()
    expected = tree_digests(data)
    sql(url, "DELETE FROM notes WHERE id = 2")
    fill(data, "new")
    restorer = Restorer(engine, Units(), tmp_path / "work", dumps=dumps)
    plan = RestorePlan("app", snapshot, (str(data),), UNITS, (name,))
    await steps_of(restorer, plan)
    assert tree_digests(data) == expected
    assert sql(url, "SELECT id, body FROM notes ORDER BY id") == [(1, "kept"), (2, "also kept")]
    # The safety snapshot holds the database as it was just before the restore.
    safety = [s for s in await engine.snapshots("app") if s.reason is BackupReason.PRE_RESTORE]
    assert str(dumps.folder("app")) in safety[0].paths
    assert not dumps.folder("app").exists()


async def test_one_restore_of_a_service_at_a_time_even_across_processes(setup: Setup) -> None:
    snapshot = await setup.snapshot()
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(setup.work / "app.lock"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert other.stdout is not None
        assert (await other.stdout.readline()).strip() == b"locked"
        with pytest.raises(BackupError, match="Another restore of this service is running"):
            await steps_of(setup.restorer(), setup.plan(snapshot))
        assert setup.units.calls == []
        assert setup.state() == setup.current
    finally:
        other.kill()
        await other.wait()
    await steps_of(setup.restorer(), setup.plan(snapshot))  # free again
    assert setup.state() == setup.expected


HOLD_LOCK = """
import fcntl, os, sys, time
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""

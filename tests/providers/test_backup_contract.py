"""One suite, three engines: the in-memory fake, restic on a local repository and restic on
S3 (moto on loopback). What the handlers rely on must hold for all of them.

A repository is shared by the tests of one engine (restic derives its key on every call, so
each repository costs time). Tests keep apart by service id, and only the retention test
takes scheduled snapshots, since retention acts on every service.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from providers.backup.base import (
    BackupError,
    BackupProgress,
    BackupReason,
    RetentionPolicy,
    Snapshot,
)
from providers.backup.memory import MemoryBackupEngine
from providers.backup.restic import ResticBackupEngine, ResticSettings
from tests.support.moto import MotoS3
from tests.support.restic_fixtures import (
    copy_of,
    make_source_tree,
    s3_settings,
    tree_digests,
)

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(60)

MANUAL = BackupReason.MANUAL
SCHEDULED = BackupReason.SCHEDULED
_services = itertools.count(1)


def new_service() -> str:
    return f"app{next(_services)}"


@dataclass
class Backend:
    """Hands out engines on one ready repository, and fresh empty ones."""

    name: str
    root: Path
    settings: ResticSettings | None = None
    memory: MemoryBackupEngine | None = None
    moto: MotoS3 | None = None

    def engine(self, drill_hook: Callable[[Path], None] | None = None) -> BackupEngine:
        hook = drill_hook
        if self.memory is not None:
            self.memory.drill_hook = hook
            return self.memory
        assert self.settings is not None
        return ResticBackupEngine(self.settings, drill_hook=hook)

    def fresh(self) -> BackupEngine:
        if self.settings is None:
            return MemoryBackupEngine()
        if self.moto is not None:
            return ResticBackupEngine(replace(self.settings, repository=self.moto.new_repository()))
        return ResticBackupEngine(replace(self.settings, repository=str(self.root / "fresh")))


ENGINES = ["memory", "restic-local", "restic-s3"]
# What does not depend on where the repository lives (restic's own logic, our parsing) runs
# on the local repository only; S3 costs a few seconds a test.
not_on_s3 = pytest.mark.parametrize("backend", ENGINES[:2], indirect=True)


@pytest.fixture(scope="module", params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "memory":
        found = Backend("memory", root, memory=MemoryBackupEngine())
    elif request.param == "restic-local":
        # A copy of the session's empty repository; the S3 one below is made by init.
        empty: ResticSettings = request.getfixturevalue("empty_repo")
        found = Backend("restic-local", root, settings=copy_of(empty, root))
    else:
        password = root / "password"
        password.write_text("correct horse battery staple\n")
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        found = Backend("restic-s3", root, settings=s3_settings(moto, root, password), moto=moto)
    asyncio.run(found.engine().init())
    return found


@pytest.fixture
def engine(backend: Backend) -> BackupEngine:
    return backend.engine()


@dataclass(frozen=True)
class BackedUp:
    service: str
    source: Path
    snapshot: Snapshot


@pytest.fixture(scope="module")
def backed_up(backend: Backend) -> BackedUp:
    """One manual snapshot of a source tree, for the tests that only read it."""
    service = new_service()
    source = make_source_tree(backend.root / "shared")

    async def take() -> Snapshot:
        engine = backend.engine()
        await engine.backup(service, [source], MANUAL)
        return (await engine.snapshots(service))[0]

    return BackedUp(service, source, asyncio.run(take()))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_source_tree(tmp_path)


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def restored_copy(target: Path, source: Path) -> Path:
    """Where a restore puts ``source``: under the target at its absolute path."""
    return target / source.relative_to("/")


async def test_init_is_idempotent(engine: BackupEngine, backed_up: BackedUp) -> None:
    await engine.init()

    assert backed_up.snapshot.id in [snap.id for snap in await engine.snapshots()]


async def test_a_repository_that_was_never_made_is_a_clear_error(backend: Backend) -> None:
    with pytest.raises(BackupError, match="no backup repository"):
        await backend.fresh().snapshots()


async def test_a_backup_is_tagged_with_its_service_and_reason(
    engine: BackupEngine, backed_up: BackedUp, source: Path
) -> None:
    service = new_service()
    seen: list[BackupProgress] = []

    async def progress(report: BackupProgress) -> None:
        seen.append(report)

    result = await engine.backup(service, [source], MANUAL, progress)

    [snap] = await engine.snapshots(service)
    assert snap.id.startswith(result.snapshot_id)
    assert (snap.service_id, snap.reason) == (service, MANUAL)
    assert snap.paths == (str(source),)
    assert abs(snap.time - datetime.now(UTC)) < timedelta(minutes=1)
    assert result.files_new == 10
    assert seen[-1].percent == 100.0
    assert seen[-1].bytes_total == tree_size(source)
    everything = {s.id: s.service_id for s in await engine.snapshots()}
    assert everything[snap.id] == service
    assert everything[backed_up.snapshot.id] == backed_up.service


@not_on_s3
async def test_a_second_backup_counts_only_what_changed(engine: BackupEngine, source: Path) -> None:
    service = new_service()
    await engine.backup(service, [source], MANUAL)
    (source / "config.json").write_text('{"name": "app", "port": 9090}')

    result = await engine.backup(service, [source], MANUAL)

    assert (result.files_new, result.files_changed, result.files_unmodified) == (0, 1, 9)
    first, second = await engine.snapshots(service)
    assert first.time < second.time
    assert second.id.startswith(result.snapshot_id)


async def test_a_restore_brings_back_every_file_intact(
    engine: BackupEngine, backed_up: BackedUp, tmp_path: Path
) -> None:
    result = await engine.restore(backed_up.snapshot.id, tmp_path / "staging", verify=True)

    assert (result.files, result.verified) == (10, True)
    copy = restored_copy(tmp_path / "staging", backed_up.source)
    assert tree_digests(copy) == tree_digests(backed_up.source)


@not_on_s3
async def test_a_restore_can_take_only_some_paths(
    engine: BackupEngine, backed_up: BackedUp, tmp_path: Path
) -> None:
    source = backed_up.source
    odd = source / "uploads" / "odd [1]*.txt"

    await engine.restore(backed_up.snapshot.id, tmp_path / "one", [str(odd)])
    await engine.restore(backed_up.snapshot.id, tmp_path / "db", [str(source / "db")])

    assert tree_digests(tmp_path / "one") == {
        str(odd.relative_to("/")): tree_digests(odd.parent)[odd.name]
    }
    assert list(tree_digests(tmp_path / "db")) == [
        str((source / "db/main.sqlite").relative_to("/"))
    ]


@not_on_s3
async def test_an_unknown_snapshot_cannot_be_restored_or_forgotten(
    engine: BackupEngine, tmp_path: Path
) -> None:
    with pytest.raises(BackupError, match=r"^No such snapshot\.$"):
        await engine.restore("0123456789abcdef", tmp_path / "staging")
    with pytest.raises(BackupError, match=r"^No such snapshot\.$"):
        await engine.forget("0123456789abcdef")


@not_on_s3
async def test_forget_removes_exactly_one_snapshot(
    engine: BackupEngine, backed_up: BackedUp, source: Path
) -> None:
    service = new_service()
    await engine.backup(service, [source], MANUAL)
    [snap] = await engine.snapshots(service)

    await engine.forget(snap.id)

    left = [s.id for s in await engine.snapshots()]
    assert snap.id not in left
    assert backed_up.snapshot.id in left


async def test_retention_forgets_only_scheduled_snapshots_and_keeps_each_service_apart(
    engine: BackupEngine, source: Path
) -> None:
    quiet, busy = new_service(), new_service()
    await engine.backup(quiet, [source], SCHEDULED)
    for reason in (SCHEDULED, SCHEDULED, MANUAL, BackupReason.PRE_RESTORE):
        await engine.backup(busy, [source], reason)
    before = await engine.snapshots()
    [quiet_snap] = [s.id for s in before if s.service_id == quiet]
    old, newest, manual, pre_restore = [s.id for s in before if s.service_id == busy]

    result = await engine.apply_retention(RetentionPolicy(keep_last=1))

    assert result.removed == (old,)
    assert set(result.kept) == {quiet_snap, newest}
    after = [s.id for s in await engine.snapshots()]
    assert after == [s.id for s in before if s.id != old]
    assert {newest, manual, pre_restore, quiet_snap} <= set(after)


@not_on_s3
async def test_an_empty_retention_policy_is_refused(engine: BackupEngine) -> None:
    with pytest.raises(BackupError, match="keeps nothing"):
        await engine.apply_retention(RetentionPolicy())


async def test_check_finds_a_healthy_repository(engine: BackupEngine, backed_up: BackedUp) -> None:
    result = await engine.check()

    assert (result.ok, result.read_data_subset, result.problems) == (True, "5%", ())


async def test_a_drill_compares_a_sample_and_finds_it_intact(
    engine: BackupEngine, backed_up: BackedUp, tmp_path: Path
) -> None:
    result = await engine.drill(3, tmp_path, service_id=backed_up.service)

    assert (result.snapshot_id, result.files_compared) == (backed_up.snapshot.id, 3)
    assert result.mismatches == ()
    assert result.ok
    assert list(tree_digests(tmp_path)) == []  # the drill cleans up after itself


@not_on_s3
async def test_a_drill_reports_a_restored_file_that_differs(
    backend: Backend, backed_up: BackedUp, tmp_path: Path
) -> None:
    spoiled: list[str] = []

    def spoil(folder: Path) -> None:
        victim = sorted(p for p in folder.rglob("*") if p.is_file())[0]
        victim.write_bytes(victim.read_bytes() + b"!")
        spoiled.append("/" + str(victim.relative_to(folder)))

    engine = backend.engine(drill_hook=spoil)

    result = await engine.drill(3, tmp_path, service_id=backed_up.service)

    assert result.files_compared == 3
    assert result.mismatches == tuple(spoiled)
    assert spoiled[0].startswith(str(backed_up.source))
    assert not result.ok


@not_on_s3
async def test_a_drill_without_snapshots_is_a_clear_error(
    engine: BackupEngine, tmp_path: Path
) -> None:
    with pytest.raises(BackupError, match="no snapshot to test"):
        await engine.drill(3, tmp_path, service_id=new_service())


@not_on_s3
async def test_stats_grow_with_a_backup(engine: BackupEngine, source: Path) -> None:
    before = await engine.stats()
    await engine.backup(new_service(), [source], MANUAL)

    after = await engine.stats()

    assert after.snapshot_count == before.snapshot_count + 1
    assert after.stored_bytes >= before.stored_bytes + 300_000  # main.sqlite is random


@not_on_s3
async def test_a_missing_folder_is_not_backed_up(engine: BackupEngine, tmp_path: Path) -> None:
    service = new_service()
    with pytest.raises(BackupError, match="Nothing to back up"):
        await engine.backup(service, [tmp_path / "gone"], MANUAL)
    assert await engine.snapshots(service) == []


@not_on_s3
async def test_a_service_id_outside_the_catalogue_is_refused(
    engine: BackupEngine, source: Path
) -> None:
    with pytest.raises(BackupError, match=r"^That is not a service id\.$"):
        await engine.backup("app,reason:manual", [source], MANUAL)
    with pytest.raises(BackupError, match=r"^That is not a service id\.$"):
        await engine.snapshots("--all")


@not_on_s3
async def test_a_failing_progress_report_does_not_stop_the_backup(
    engine: BackupEngine, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = new_service()

    async def broken(report: BackupProgress) -> None:
        raise RuntimeError("chat is down")

    result = await engine.backup(service, [source], MANUAL, broken)

    assert [s.id[: len(result.snapshot_id)] for s in await engine.snapshots(service)] == [
        result.snapshot_id
    ]
    assert "backup progress report failed" in caplog.text

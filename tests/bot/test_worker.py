"""Backups and restores in the root units: the bot starts ``steward-backup@…`` or
``steward-restore@…`` through (fake) systemctl, the unit runs ``steward worker`` (a real
process, real restic), and the bot reads progress and the outcome from the status file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from providers.backup.base import (
    SELF,
    BackupError,
    BackupProgress,
    BackupReason,
    RestoreError,
    RestorePlan,
)
from providers.backup.datajobs import UnitDataJobs, UnitSelfSnapshot
from providers.backup.restic import ResticBackupEngine, ResticSettings
from providers.host.catalogue import ServiceCatalogue
from tests.support.fake_system import FakeSystem
from tests.support.restic_fixtures import copy_of, tree_digests

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, tmp_path: Path, repo: ResticSettings, monkeypatch: pytest.MonkeyPatch):
        self.fake = FakeSystem(tmp_path)
        self.fake.add_unit("app.service")
        self.fake.add_unit("nginx.service")
        self.state_dir = tmp_path / "state"
        self.state_dir.mkdir()
        self.worker_dir = tmp_path / "worker"
        self.data = tmp_path / "srv" / "app"
        (self.data / "sub").mkdir(parents=True)
        (self.data / "a.txt").write_text("as backed up\n")
        (self.data / "sub" / "b.bin").write_bytes(b"\x00\x01" * 5000)
        catalogue = {"services": [
            {"id": "app", "name": "App", "units": ["app.service", "nginx.service"],
             "folders": [str(self.data)]},
            {"id": "web", "name": "Web", "units": ["nginx.service"], "folders": []},
        ]}  # fmt: skip
        catalogue_file = tmp_path / "catalogue.json"
        catalogue_file.write_text(json.dumps(catalogue))
        self.catalogue = ServiceCatalogue.from_json(catalogue)
        self.engine = ResticBackupEngine(repo)
        env = self.fake.env({
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path),
            "STEWARD_STATE_DIR": str(self.state_dir),
            "STEWARD_WORKER_DIR": str(self.worker_dir),
            "STEWARD_CATALOGUE": str(catalogue_file),
            "STEWARD_RESTIC_REPOSITORY": repo.repository,
            "STEWARD_RESTIC_PASSWORD_FILE": str(repo.password_file),
        })  # fmt: skip
        self.env = env
        with self.fake.edit() as state:
            state["data_worker"] = {"argv": [sys.executable, "-m", "bot", "worker"], "env": env}
        self.fake.install(monkeypatch)
        self.jobs = UnitDataJobs(self.worker_dir / "jobs", poll=0.02)


@pytest.fixture
def server(tmp_path: Path, empty_repo: ResticSettings, monkeypatch: pytest.MonkeyPatch) -> Server:
    return Server(tmp_path, copy_of(empty_repo, tmp_path), monkeypatch)


async def test_a_backup_runs_in_its_unit_and_its_result_comes_back(server: Server) -> None:
    seen: list[BackupProgress] = []

    async def progress(report: BackupProgress) -> None:
        seen.append(report)

    result = await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, progress)
    (snap,) = await server.engine.snapshots("app")
    assert snap.id.startswith(result.snapshot_id) or snap.short_id == result.snapshot_id
    assert snap.reason is BackupReason.MANUAL
    assert str(server.data) in snap.paths
    assert result.files_new == 2
    unit = server.fake.unit("steward-backup@app:manual.service")
    assert unit["Result"] == "success"
    status = json.loads((server.worker_dir / "jobs" / "app.json").read_text())
    assert status["state"] == "done"


async def test_a_restore_runs_in_its_unit_and_stops_only_the_services_own_units(
    server: Server,
) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    expected = tree_digests(server.data)
    (server.data / "a.txt").write_text("broken since\n")
    (snap,) = await server.engine.snapshots("app")
    server.fake.clear_calls()
    steps: list[str] = []

    async def step(text: str) -> None:
        steps.append(text)

    # The worker plans the restore itself; what the bot sends beyond the snapshot is ignored.
    plan = RestorePlan("app", snap.id, ("/etc",), ("sshd.service",))
    report = await server.jobs.restore(plan, step)
    assert tree_digests(server.data) == expected
    assert report.folders == (str(server.data),)
    assert report.safety_snapshot
    calls = [" ".join(c) for c in server.fake.calls("systemctl")]
    assert "systemctl stop -- app.service" in calls
    assert "systemctl start -- app.service" in calls
    assert not any("nginx" in call for call in calls)  # the web service shares it
    journal = "\n".join(server.fake.journal(f"steward-restore@app:{snap.id}.service"))
    assert "with verification" in journal


async def test_a_failed_restore_in_the_unit_says_the_old_data_is_back(server: Server) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    (server.data / "a.txt").write_text("today\n")
    (server.data.parent / ".app.steward-old").mkdir()  # in the way of the swap
    (snap,) = await server.engine.snapshots("app")

    async def step(_text: str) -> None:
        pass

    with pytest.raises(RestoreError, match="in the way") as failed:
        await server.jobs.restore(RestorePlan("app", snap.id, (), ()), step)
    assert failed.value.kept_old
    assert failed.value.safety_snapshot
    assert (server.data / "a.txt").read_text() == "today\n"
    assert server.fake.unit(f"steward-restore@app:{snap.id}.service")["ActiveState"] == "failed"


async def test_bad_requests_never_reach_a_unit_or_fail_in_it_without_change(
    server: Server,
) -> None:
    async def step(_text: str) -> None:
        pass

    with pytest.raises(BackupError, match="not a service"):
        await server.jobs.restore(RestorePlan("app", "../../etc", (), ()), step)
    assert server.fake.calls("systemctl") == []
    # Well-formed but unknown: the worker refuses, the unit fails, nothing was written.
    with pytest.raises(BackupError, match="ended without an outcome"):
        await server.jobs.restore(RestorePlan("nope", "0" * 8, (), ()), step)
    with pytest.raises(BackupError, match="No single snapshot"):
        await server.jobs.restore(RestorePlan("app", "0" * 8, (), ()), step)
    assert (server.data / "a.txt").read_text() == "as backed up\n"
    assert await server.engine.snapshots() == []


async def test_a_restore_cut_short_is_put_right_by_the_recover_unit(server: Server) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    (server.data / "a.txt").write_text("today\n")
    # A restore killed after the live folder was moved aside: the journal says so.
    old = server.data.parent / ".app.steward-old"
    shutil.move(server.data, old)
    work = server.worker_dir / "restore"
    work.mkdir()
    (work / "app.json").write_text(json.dumps({
        "service_id": "app", "snapshot_id": "x", "folders": [str(server.data)],
        "units": ["app.service"], "existed": [str(server.data)],
        "swapping": [str(server.data)], "committed": False, "safety_snapshot": None,
    }))  # fmt: skip

    async def step(_text: str) -> None:
        pass

    restored, said = await server.jobs.recover("app", step)
    assert not restored
    assert "old data is back" in said
    assert (server.data / "a.txt").read_text() == "today\n"
    assert not old.exists()


async def test_after_a_bot_restart_the_units_own_outcome_is_reported(server: Server) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    async def step(_text: str) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    (snap,) = await server.engine.snapshots("app")
    await server.jobs.restore(RestorePlan("app", snap.id, (), ()), step)
    server.fake.clear_calls()
    # The bot lost track of the restore; the unit finished it on its own.
    restored, said = await server.jobs.recover("app", step)
    assert restored
    assert "It finished meanwhile: 2 files put back" in said
    assert not any("recover" in " ".join(c) for c in server.fake.calls("systemctl"))


async def test_the_worker_never_follows_a_link_and_an_old_outcome_is_not_this_ones(
    server: Server,
) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    jobs = server.worker_dir / "jobs"
    assert oct(jobs.stat().st_mode & 0o777) == "0o755"
    assert oct((jobs / "app.json").stat().st_mode & 0o777) == "0o644"
    victim = server.state_dir / "victim"
    victim.write_text("untouched\n")
    (jobs / "app.tmp").symlink_to(victim)
    # The next run's worker fails before it writes (the repository is gone): the "done" of
    # the run before must not pass for its outcome.
    shutil.rmtree(server.engine._settings.repository)
    with pytest.raises(BackupError, match=r"[Rr]epository"):
        await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    assert victim.read_text() == "untouched\n"
    assert not (jobs / "app.tmp").exists()
    stale = json.loads((jobs / "app.json").read_text())
    stale["state"], stale["started"] = "done", 0
    (jobs / "app.json").write_text(json.dumps(stale))
    with server.fake.edit() as state:
        state["data_worker"]["argv"] = ["false"]
    with pytest.raises(BackupError, match="ended without an outcome"):
        await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)


def worker(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """``steward worker`` as root runs it: from a unit, or from an admin's shell."""
    return subprocess.run([sys.executable, "-m", "bot", "worker", *args], env=server.env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


async def test_a_snapshot_no_backup_unit_took_is_refused_unless_an_admin_says_foreign(
    server: Server,
) -> None:
    # Whoever holds the repository password (the bot, or someone who took it from the bot)
    # takes a snapshot of their own, tagged for the service and holding its folder.
    (server.data / "a.txt").write_text("planted\n")
    await server.engine.backup("app", [server.data], BackupReason.MANUAL)
    (foreign,) = await server.engine.snapshots("app")
    (server.data / "a.txt").write_text("today\n")

    async def step(_text: str) -> None:
        pass

    with pytest.raises(BackupError, match="not taken by this server's backup units"):
        await server.jobs.restore(RestorePlan("app", foreign.id, (), ()), step)
    assert (server.data / "a.txt").read_text() == "today\n"
    assert len(await server.engine.snapshots("app")) == 1  # not even a safety snapshot
    # An admin on a root shell who trusts it passes --foreign.
    done = worker(server, "restore", f"app:{foreign.short_id}", "--foreign")
    assert done.returncode == 0, done.stderr
    assert (server.data / "a.txt").read_text() == "planted\n"


async def test_a_snapshot_the_worker_took_is_restored_and_a_changed_tree_is_not(
    server: Server,
) -> None:
    async def quiet(_report: BackupProgress) -> None:
        pass

    async def step(_text: str) -> None:
        pass

    await server.jobs.backup(server.catalogue["app"], BackupReason.MANUAL, quiet)
    (snap,) = await server.engine.snapshots("app")
    ledger = json.loads((server.worker_dir / "snapshots" / "app.json").read_text())
    assert ledger == {snap.id: snap.tree}
    # The same id with another tree: what a tampered repository would list.
    (server.worker_dir / "snapshots" / "app.json").write_text(json.dumps({snap.id: "0" * 64}))
    with pytest.raises(BackupError, match="not taken by this server's backup units"):
        await server.jobs.restore(RestorePlan("app", snap.id, (), ()), step)
    (server.worker_dir / "snapshots" / "app.json").write_text(json.dumps(ledger))
    report = await server.jobs.restore(RestorePlan("app", snap.id, (), ()), step)
    assert report.safety_snapshot is not None
    recorded = json.loads((server.worker_dir / "snapshots" / "app.json").read_text())
    safety = next(s for s in await server.engine.snapshots("app") if s.id != snap.id)
    assert recorded == {snap.id: snap.tree, safety.id: safety.tree}


@pytest.mark.parametrize(
    "instance", ["app:manual\n", "app:--foo", "app:-h", "app:manual\nx", "app:scheduled "]
)
async def test_newline_and_option_like_instances_are_refused_by_the_bot_and_the_worker(
    server: Server, instance: str
) -> None:
    async def step(_text: str) -> None:
        pass

    arg = instance.split(":", 1)[1]
    with pytest.raises(BackupError, match="not a service"):
        await server.jobs.restore(RestorePlan("app", arg, (), ()), step)
    assert server.fake.calls("systemctl") == []
    for kind in ("backup", "restore"):
        done = worker(server, kind, instance)
        assert done.returncode == 2, done.stderr
        assert "is not SERVICE:ARG" in done.stderr
    assert not (server.worker_dir / "jobs").exists()
    assert await server.engine.snapshots() == []


async def test_stewards_own_snapshot_runs_in_its_root_unit_with_paths_from_the_settings(
    server: Server,
) -> None:
    """``steward-backup@steward:pre-upgrade``: no catalogue entry, the reason is all the
    instance says; the database is copied with SQLite's backup API while it is open."""
    database = server.state_dir / "steward.db"
    live = sqlite3.connect(database)
    live.execute("CREATE TABLE audit_log (command TEXT)")
    live.execute("INSERT INTO audit_log VALUES ('/upgrade')")
    live.commit()
    try:
        result = await UnitSelfSnapshot(server.jobs).take(BackupReason.PRE_UPGRADE)
    finally:
        live.close()
    (snap,) = await server.engine.snapshots(SELF)
    assert snap.reason is BackupReason.PRE_UPGRADE
    assert snap.id.startswith(result.snapshot_id) or snap.short_id == result.snapshot_id
    unit = server.fake.unit(f"steward-backup@{SELF}:pre-upgrade.service")
    assert unit["Result"] == "success"
    assert not any(path.name.startswith("steward.db-") for path in server.state_dir.iterdir())
    target = server.state_dir.parent / "back"
    await server.engine.restore(snap.id, target)
    (copy,) = target.rglob("database/steward.db")
    with sqlite3.connect(copy) as check:
        assert check.execute("SELECT command FROM audit_log").fetchall() == [("/upgrade",)]
    check.close()


async def test_a_reason_the_worker_does_not_know_takes_no_snapshot_of_steward(
    server: Server,
) -> None:
    with pytest.raises(BackupError, match="not a reason"):
        await server.jobs.backup_self(BackupReason.PRE_RESTORE)
    assert await server.engine.snapshots(SELF) == []

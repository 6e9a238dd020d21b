"""/backup, /backups, /forget and the scheduled backup through the engine, on the demo's
in-memory backup engine (the restic adapter itself is tested against real restic)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bot.storage.database import Database
from handlers.backups import monthly_drill, scheduled_backup, weekly_check
from handlers.core.context import Context
from handlers.core.messages import Command
from handlers.core.progress import NoProgress
from handlers.core.spec import Role
from providers.backup.base import BackupReason, RetentionPolicy
from providers.backup.datajobs import LocalDataJobs
from providers.backup.memory import WRONG_PASSWORD
from providers.backup.restore import Restorer
from tests.conftest import ADMIN, CHAT, OPERATOR, VIEWER, Harness, make_harness


async def test_a_manual_backup_runs_at_once_takes_one_tagged_snapshot_and_shows_progress(
    harness: Harness,
) -> None:
    harness.server.backups.step_seconds = 0.02
    assert "There are no snapshots yet" in await harness.say("/backups", VIEWER)
    said = await harness.say("/backup nextcloud", OPERATOR)
    assert said.startswith("⏳ Backs up Nextcloud now: 1 folder(s)")
    assert "Confirm" not in said  # a backup destroys nothing: it does not ask
    assert not any(sent.reply.buttons for sent in harness.outbox.messages)
    assert await harness.engine.wait_for_jobs(10)
    job = harness.outbox.last
    shown = [job.reply.text, *(edit.text for edit in job.edits)]
    assert any("Backing up Nextcloud (1/1)" in text for text in shown)
    assert "✅ Nextcloud: snapshot <code>" in job.current.text
    (snap,) = await harness.server.backups.snapshots("nextcloud")
    assert snap.reason is BackupReason.MANUAL
    listing = await harness.say("/backups nextcloud", VIEWER)
    assert f"<code>{snap.short_id}</code>" in listing
    assert "nextcloud (manual" in listing


async def test_backup_all_covers_every_service_with_folders(harness: Harness) -> None:
    await harness.say("/backup all", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    found = await harness.server.backups.snapshots()
    with_folders = {
        sid for sid in harness.server.catalogue if harness.server.catalogue[sid].folders
    }
    assert {s.service_id for s in found} == with_folders
    assert "ocserv" not in with_folders  # no folders: nothing to back up


async def test_a_failing_service_is_reported_and_the_others_still_run(harness: Harness) -> None:
    harness.server.backups.fail_next["backup"] = "The repository is locked by another run."
    await harness.say("/backup", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    text = harness.outbox.last.current.text
    assert "❌ Forgejo: The repository is locked by another run." in text
    assert "✅ Nextcloud" in text


async def test_forget_names_the_snapshot_and_needs_an_admin(harness: Harness) -> None:
    await harness.say("/backup vaultwarden", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    (snap,) = await harness.server.backups.snapshots("vaultwarden")
    assert "needs the admin role" in await harness.say(f"/forget {snap.short_id}", OPERATOR)
    prompt = await harness.say(f"/forget {snap.short_id}")
    assert "vaultwarden (manual" in prompt
    await harness.press(1)
    assert await harness.server.backups.snapshots("vaultwarden") == []
    assert "No single snapshot matches" in await harness.say("/forget deadbeef")


async def test_bad_input_and_a_broken_repository_get_one_sentence(harness: Harness) -> None:
    assert "Unknown service nope" in await harness.say("/backup nope", OPERATOR)
    assert "OpenConnect VPN has no folders" in await harness.say("/backup ocserv", OPERATOR)
    harness.server.backups.wrong_password = True
    assert WRONG_PASSWORD in await harness.say("/backups")
    harness.engine.deps = replace(harness.engine.deps, backups=None)
    assert "STEWARD_RESTIC_REPOSITORY" in await harness.say("/backups")


async def test_the_scheduled_backup_applies_retention_to_scheduled_snapshots_only(
    harness: Harness,
) -> None:
    deps, clock = harness.engine.deps, harness.clock
    ctx = Context(Command("backup", (), ADMIN, CHAT, clock()), Role.ADMIN, deps, NoProgress(),
                  clock())  # fmt: skip
    await harness.say("/backup forgejo", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    policy = RetentionPolicy(keep_last=1)
    for _ in range(3):
        reply = await scheduled_backup(deps, ctx, policy)
    assert reply.silent  # all went well
    assert "retention:" in reply.text
    forgejo = await harness.server.backups.snapshots("forgejo")
    reasons = sorted(s.reason.value for s in forgejo if s.reason is not None)
    assert reasons == ["manual", "scheduled"]


async def test_the_report_says_how_old_each_services_last_backup_is(harness: Harness) -> None:
    text = await harness.say("/report")
    assert "⚠️ Nextcloud: never backed up" in text
    await harness.say("/backup nextcloud", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    assert "✅ Nextcloud: last backup 0 h ago" in await harness.say("/report")


async def test_the_weekly_check_and_the_monthly_drill_report_and_are_remembered(
    harness: Harness, tmp_path: Path
) -> None:
    deps, clock = harness.engine.deps, harness.clock
    await harness.say("/backup nextcloud", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    checked = await weekly_check(deps, clock())
    assert checked.silent
    assert "the repository is sound" in checked.text
    drilled = await monthly_drill(deps, clock(), tmp_path)
    assert drilled.silent
    assert "files restored from" in drilled.text
    report = await harness.say("/report")
    assert "✅ last backup check 2026-11-28: ok" in report
    assert "✅ last backup restore drill 2026-11-28: ok" in report
    harness.server.backups.damaged = True
    broken = await weekly_check(deps, clock())
    assert not broken.silent
    assert "damage" in broken.text
    assert "❌ last backup check 2026-11-28: failed" in await harness.say("/report")


class FileDumps:
    """Database dumps as small files (pg_dump itself is tested against real PostgreSQL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[str] = []

    def folder(self, service_id: str) -> Path:
        return self.root / service_id

    async def dump(self, service_id: str, databases: Sequence[str]) -> Path:
        self.calls.append(f"dump {service_id} {','.join(databases)}")
        self.folder(service_id).mkdir(parents=True)
        for name in databases:
            (self.folder(service_id) / f"{name}.pgdump").write_bytes(b"PGDMP " + name.encode())
        return self.folder(service_id)

    async def load(self, dumps: Path, databases: Sequence[str]) -> None:
        raise AssertionError("a backup never loads")

    async def clean(self, service_id: str) -> None:
        self.calls.append(f"clean {service_id}")
        shutil.rmtree(self.folder(service_id))


async def test_databases_are_dumped_into_the_snapshot_and_the_dump_removed(
    harness: Harness, tmp_path: Path
) -> None:
    dumps = FileDumps(tmp_path / "dumps")
    server = harness.server
    restorer = Restorer(server.backups, server.services, tmp_path / "work")
    jobs = LocalDataJobs(server.backups, restorer, dumps)
    harness.engine.deps = replace(harness.engine.deps, dumps=dumps, data_jobs=jobs)
    await harness.say("/backup nextcloud", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    assert dumps.calls == ["dump nextcloud nextcloud", "clean nextcloud"]
    (snap,) = await harness.server.backups.snapshots("nextcloud")
    assert str(dumps.folder("nextcloud")) in snap.paths
    assert not dumps.folder("nextcloud").exists()
    assert "not in it" not in harness.outbox.last.current.text


async def test_without_postgresql_settings_the_reply_says_the_database_is_missing(
    harness: Harness,
) -> None:
    harness.engine.deps = replace(harness.engine.deps, demo=None)
    await harness.say("/backup nextcloud", OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    text = harness.outbox.last.current.text
    assert "Its database (nextcloud) is not in it: set <code>STEWARD_POSTGRES_HOST</code>" in text


async def test_steward_confirm_backup_makes_backup_ask_first(sqlite_db: Database) -> None:
    harness = make_harness(sqlite_db, confirm=frozenset({"backup"}))
    prompt = await harness.say("/backup nextcloud", OPERATOR)
    assert "Backs up Nextcloud now: 1 folder(s)" in prompt
    assert await harness.server.backups.snapshots("nextcloud") == []  # nothing before Confirm
    await harness.press(1, OPERATOR)
    assert await harness.engine.wait_for_jobs(10)
    (snap,) = await harness.server.backups.snapshots("nextcloud")
    assert snap.reason is BackupReason.MANUAL

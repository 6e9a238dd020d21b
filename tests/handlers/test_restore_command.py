"""/restore through the engine, on the demo's in-memory backups and a data folder of its own
(the steps themselves are tested with real restic in tests/providers/test_restore.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.storage.database import Database
from providers.backup.base import BackupReason
from providers.backup.datajobs import LocalDataJobs
from providers.backup.restore import Restorer
from providers.host.catalogue import ServiceCatalogue, ServiceInfo
from tests.conftest import ADMIN2, OPERATOR, Harness, make_harness

NEXTCLOUD = "var/lib/nextcloud"


def with_restorer(harness: Harness, tmp_path: Path) -> Path:
    root = harness.server.data_root(tmp_path / "root")
    server = harness.server
    restorer = Restorer(server.backups, server.services, tmp_path / "work", root=root)
    jobs = LocalDataJobs(server.backups, restorer)
    harness.engine.deps = replace(harness.engine.deps, data_jobs=jobs)
    return root


@pytest.fixture
def root(harness: Harness, tmp_path: Path) -> Path:
    return with_restorer(harness, tmp_path)


async def backed_up(harness: Harness, service: str) -> str:
    await harness.say(f"/backup {service}")
    assert await harness.engine.wait_for_jobs(10)
    snaps = await harness.server.backups.snapshots(service)
    return snaps[-1].short_id


async def test_restore_previews_the_snapshot_and_puts_the_data_back(
    harness: Harness, root: Path
) -> None:
    snapshot = await backed_up(harness, "nextcloud")
    data = root / NEXTCLOUD / "config.json"
    before = data.read_bytes()
    data.write_bytes(b"broken since")
    harness.clock.advance(minutes=5)
    prompt = await harness.say("/restore nextcloud latest")
    assert f"snapshot <code>{snapshot}</code>, manual" in prompt
    assert "Folders: <code>/var/lib/nextcloud</code>" in prompt
    # nginx is shared (the catalogue says so): a restore of Nextcloud leaves it serving.
    assert "Stops phpfpm-nextcloud.service, redis-nextcloud.service during" in prompt
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    job = harness.outbox.last
    assert f"Nextcloud is restored from snapshot <code>{snapshot}</code>" in job.current.text
    assert any("into a staging folder, with verification" in e.text for e in job.edits)
    assert data.read_bytes() == before
    safety = [
        s
        for s in await harness.server.backups.snapshots("nextcloud")
        if s.reason is BackupReason.PRE_RESTORE
    ]
    assert len(safety) == 1
    assert f"<code>{safety[0].short_id}</code>" in job.current.text
    # "latest" never means the safety snapshot: it still names the manual one.
    assert f"snapshot <code>{snapshot}</code>" in await harness.say("/restore nextcloud latest")


async def test_restore_needs_an_admin_and_refuses_bad_input_without_change(
    harness: Harness, root: Path
) -> None:
    assert "needs the admin role" in await harness.say("/restore nextcloud latest", OPERATOR)
    assert "has no snapshot yet" in await harness.say("/restore nextcloud latest")
    assert "Unknown service nope" in await harness.say("/restore nope latest")
    await backed_up(harness, "nextcloud")
    said = await harness.say("/restore nextcloud deadbeef")
    assert "No single snapshot of Nextcloud matches deadbeef" in said
    assert "usage" in (await harness.say("/restore nextcloud")).lower()
    assert "snapshot" in await harness.say("/restore nextcloud ../../etc")
    assert len(await harness.server.backups.snapshots()) == 1


async def test_a_failed_restore_says_the_old_data_is_back(harness: Harness, root: Path) -> None:
    await backed_up(harness, "nextcloud")
    data = root / NEXTCLOUD / "config.json"
    data.write_bytes(b"today's data")
    await harness.say("/restore nextcloud latest")
    harness.server.backups.fail_next["restore"] = "The repository is locked by another run."
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    text = harness.outbox.last.current.text
    assert "The restore of Nextcloud failed: The repository is locked" in text
    assert "The old data is back in place" in text
    assert data.read_bytes() == b"today's data"
    units = harness.server.catalogue["nextcloud"].units
    statuses = await harness.server.services.status(units)
    assert all(s.active_state == "active" for s in statuses.values())


async def test_restore_can_need_a_second_admin(sqlite_db: Database, tmp_path: Path) -> None:
    harness = make_harness(sqlite_db, two_person=frozenset({"restore"}))
    root = with_restorer(harness, tmp_path)
    await backed_up(harness, "vaultwarden")
    (root / "var/lib/bitwarden_rs/data.db").write_bytes(b"changed")
    await harness.say("/restore vaultwarden latest")
    assert "needs a second admin" in await harness.press(1)
    assert (root / "var/lib/bitwarden_rs/data.db").read_bytes() == b"changed"
    await harness.press(1, ADMIN2)
    assert await harness.engine.wait_for_jobs(10)
    assert (root / "var/lib/bitwarden_rs/data.db").read_bytes() != b"changed"


async def test_a_unit_another_service_shares_keeps_running(harness: Harness, root: Path) -> None:
    await backed_up(harness, "nextcloud")
    catalogue = harness.server.catalogue
    # An older catalogue that lists a unit under two services, as their own.
    wiki = ServiceInfo("wiki", "Wiki", "", ("redis-nextcloud.service", "wiki.service"),
                       ("/var/lib/wiki",))  # fmt: skip
    shared = ServiceCatalogue([*catalogue.values(), wiki])
    harness.engine.deps = replace(harness.engine.deps, catalogue=shared)
    prompt = await harness.say("/restore nextcloud latest")
    assert "Stops phpfpm-nextcloud.service during" in prompt


async def test_latest_is_the_snapshot_the_confirmation_showed(harness: Harness, root: Path) -> None:
    shown = await backed_up(harness, "nextcloud")
    harness.clock.advance(minutes=1)
    prompt = await harness.say("/restore nextcloud latest")
    assert f"snapshot <code>{shown}</code>" in prompt
    asked = harness.last_prompt().message_id
    harness.clock.advance(minutes=2)  # a backup runs before the press
    newer = await backed_up(harness, "nextcloud")
    assert newer != shown
    await harness.press(1, message=asked)
    assert await harness.engine.wait_for_jobs(10)
    assert f"restored from snapshot <code>{shown}</code>" in harness.outbox.last.current.text

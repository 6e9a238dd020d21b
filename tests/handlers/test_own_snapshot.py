"""Steward's own snapshot from chat: taken with the scheduled backup and before every /upgrade,
which does not run without it. On the demo server's backup engine, with a real SQLite database
and real files."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from handlers.backups import scheduled_backup
from handlers.core.context import Context
from handlers.core.messages import Command
from handlers.core.progress import NoProgress
from handlers.core.spec import Role
from providers.backup.base import BackupReason, RetentionPolicy
from providers.backup.selfsnapshot import LocalSelfSnapshot, SelfSources
from tests.conftest import ADMIN, CHAT, Harness


def with_own_snapshot(harness: Harness, tmp_path: Path) -> Path:
    """A real database and desired state; the snapshot goes to the demo's backup engine."""
    tmp_path = tmp_path / "own"
    tmp_path.mkdir()
    database = tmp_path / "steward.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, command TEXT)")
        conn.execute("INSERT INTO audit_log (command) VALUES ('/status')")
    conn.close()
    (tmp_path / "desired-state.json").write_text(json.dumps({"services": {}}))
    sources = SelfSources(f"sqlite:///{database}", tmp_path / "desired-state.json", None,
                          None, None)  # fmt: skip
    own = LocalSelfSnapshot(harness.server.backups, sources, tmp_path / "work")
    harness.engine.deps = replace(harness.engine.deps, self_snapshot=own)
    return database


async def test_the_scheduled_backup_takes_stewards_own_snapshot_too(
    harness: Harness, tmp_path: Path
) -> None:
    with_own_snapshot(harness, tmp_path)
    deps, now = harness.engine.deps, harness.clock()
    ctx = Context(Command("backup", (), ADMIN, CHAT, now), Role.ADMIN, deps, NoProgress(), now)
    reply = await scheduled_backup(deps, ctx, RetentionPolicy(keep_last=3))
    assert "✅ Steward itself: snapshot" in reply.text
    (own,) = await harness.server.backups.snapshots("steward")
    assert own.reason is BackupReason.SCHEDULED
    assert not (tmp_path / "own" / "work" / "self-snapshot" / "steward-self").exists()


async def test_an_upgrade_takes_stewards_own_snapshot_first_and_not_without_it(
    harness: Harness, tmp_path: Path
) -> None:
    database = with_own_snapshot(harness, tmp_path)
    assert "Steward's own snapshot is taken first." in await harness.say("/upgrade")
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    assert harness.outbox.last.current.text.startswith("Steward itself: snapshot")
    (own,) = await harness.server.backups.snapshots("steward")
    assert own.reason is BackupReason.PRE_UPGRADE
    started = list(harness.server.rebuilds.started)
    assert started == ["steward-upgrade.service"]

    database.unlink()  # the snapshot cannot be taken: no upgrade
    await harness.say("/upgrade")
    await harness.press(1)
    assert await harness.engine.wait_for_jobs(10)
    text = harness.outbox.last.current.text
    assert "No upgrade: Steward's own snapshot failed: The bot&#x27;s database is not at" in text
    assert harness.server.rebuilds.started == started

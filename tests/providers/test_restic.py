"""What only the restic adapter does: progress while restic runs, stale locks, secrets kept
out of argv, error sentences, time limits and damaged repositories. Real restic throughout."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from providers.backup.base import BackupError, BackupProgress, BackupReason
from providers.backup.restic import ResticBackupEngine, ResticSettings, explain
from tests.support.moto import MotoS3
from tests.support.restic_fixtures import (
    CallRecorder,
    copy_of,
    make_source_tree,
    record_calls,
)

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(60)

MANUAL = BackupReason.MANUAL
ALLOWED_ENV = {
    "LC_ALL", "PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME", "RESTIC_REPOSITORY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
}  # fmt: skip


@pytest.fixture(scope="module")
def repo(empty_repo: ResticSettings, tmp_path_factory: pytest.TempPathFactory) -> ResticSettings:
    """A repository shared by the tests that do not damage it."""
    return copy_of(empty_repo, tmp_path_factory.mktemp("shared"))


def big_tree(root: Path) -> Path:
    """Enough data for restic to print several status lines before its summary."""
    source = root / "bulk"
    source.mkdir()
    for index in range(6):
        (source / f"part{index}.bin").write_bytes(os.urandom(1_000_000))
    return source


def restic_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "restic"]


async def test_progress_arrives_while_restic_runs_and_never_shows_the_password(
    repo: ResticSettings, tmp_path: Path
) -> None:
    source = big_tree(tmp_path)
    password = repo.password_file.read_text().strip()
    reports: list[tuple[BackupProgress, bool]] = []
    command_lines: list[str] = []

    async def progress(report: BackupProgress) -> None:
        running = restic_children()
        command_lines.extend(" ".join(p.cmdline()) for p in running)
        reports.append((report, bool(running)))

    await ResticBackupEngine(repo).backup("bulk", [source], MANUAL, progress)

    assert any(running for report, running in reports if report.percent < 100)
    percents = [report.percent for report, _ in reports]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0
    assert reports[-1][0].files_done == 6
    assert command_lines
    assert all("--password-file" in line and password not in line for line in command_lines)


async def test_progress_is_reported_no_more_often_than_asked(
    repo: ResticSettings, tmp_path: Path
) -> None:
    source = big_tree(tmp_path)
    reports: list[BackupProgress] = []

    async def progress(report: BackupProgress) -> None:
        reports.append(report)

    engine = ResticBackupEngine(replace(repo, progress_interval=3600.0))
    await engine.backup("bulk-quiet", [source], MANUAL, progress)

    assert 1 <= len(reports) <= 2  # the first status line, then the summary
    assert reports[-1].percent == 100.0


async def test_a_stale_lock_is_removed_once_and_the_command_retried(
    repo: ResticSettings, held_lock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = held_lock(repo)
    held.kill()
    assert held.lock_file.exists()
    calls = record_calls("restic", tmp_path, monkeypatch)

    result = await ResticBackupEngine(repo).check()

    assert result.ok
    assert calls.commands() == ["check", "unlock", "check"]
    assert not held.lock_file.exists()


async def test_a_live_lock_is_reported_after_one_unlock_attempt(
    repo: ResticSettings, held_lock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = held_lock(repo)
    calls = record_calls("restic", tmp_path, monkeypatch)
    engine = ResticBackupEngine(repo)

    with pytest.raises(BackupError, match=r"^The backup repository is locked by another"):
        await engine.check()

    assert calls.commands() == ["check", "unlock", "check"]
    assert held.lock_file.exists()
    held.kill()
    await engine.check()  # the lock is stale now: removed, and the repository usable again
    assert not held.lock_file.exists()


async def test_a_wrong_password_is_named_and_never_shown(
    repo: ResticSettings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-42\n")

    with pytest.raises(BackupError) as caught:
        await ResticBackupEngine(replace(repo, password_file=wrong)).snapshots()

    assert str(caught.value) == "The backup repository password is wrong."
    missing = replace(repo, password_file=tmp_path / "nowhere")
    with pytest.raises(BackupError, match=r"^The backup password file cannot be read\.$"):
        await ResticBackupEngine(missing).snapshots()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_missing_repository_and_a_dead_server_get_their_own_sentences(
    repo: ResticSettings, tmp_path: Path, moto_s3: MotoS3
) -> None:
    cases = {
        str(tmp_path / "no-repo"): "There is no backup repository at the configured location.",
        moto_s3.new_repository(): "There is no backup repository at the configured location.",
        f"rest:http://127.0.0.1:{_closed_port()}/": (
            "The backup repository cannot be reached; is the network down?"
        ),
    }
    for url, sentence in cases.items():
        settings = replace(
            repo, repository=url, aws_access_key_id=moto_s3.access_key_id,
            aws_secret_access_key=moto_s3.secret_access_key,
        )  # fmt: skip
        with pytest.raises(BackupError) as caught:
            await ResticBackupEngine(settings).snapshots()
        assert (url, str(caught.value)) == (url, sentence)


def assert_no_secret_in_argv(calls: CallRecorder, secrets: list[str]) -> None:
    recorded = calls.calls()
    assert recorded
    for call in recorded:
        argv = " ".join(call["argv"])
        assert "--password-file" in call["argv"]
        assert not [secret for secret in secrets if secret in argv]
        assert set(call["env"]) <= ALLOWED_ENV
        assert "RESTIC_PASSWORD" not in call["env"]


async def test_secrets_stay_out_of_argv_and_the_parent_environment_stays_out(
    repo: ResticSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_s3: MotoS3
) -> None:
    monkeypatch.setenv("RESTIC_PASSWORD", "from-the-parent")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret")
    calls = record_calls("restic", tmp_path, monkeypatch)
    engine = ResticBackupEngine(repo)
    source = make_source_tree(tmp_path)
    await engine.backup("argv", [source], MANUAL)
    [snap] = await engine.snapshots("argv")
    await engine.restore(snap.id, tmp_path / "staging")
    bucket = moto_s3.new_repository()
    s3 = replace(
        repo, repository=bucket, aws_access_key_id=moto_s3.access_key_id,
        aws_secret_access_key=moto_s3.secret_access_key, aws_default_region=moto_s3.region,
    )  # fmt: skip
    with pytest.raises(BackupError):
        await ResticBackupEngine(s3).snapshots()

    password = repo.password_file.read_text().strip()
    secrets = [password, moto_s3.secret_access_key, bucket, repo.repository]
    assert_no_secret_in_argv(calls, secrets)
    assert calls.commands() == ["backup", "snapshots", "restore", "snapshots"]
    last = calls.calls()[-1]["env"]
    assert last["AWS_SECRET_ACCESS_KEY"] == moto_s3.secret_access_key
    assert last["RESTIC_REPOSITORY"] == bucket


async def test_a_command_that_hangs_is_stopped_at_its_time_limit(
    repo: ResticSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "pid"
    (bin_dir / "restic").write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    (bin_dir / "restic").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()

    with pytest.raises(BackupError, match=r"^restic snapshots timed out after 0\.5 s\.$"):
        await ResticBackupEngine(replace(repo, timeout=0.5)).snapshots()

    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(int(pid_file.read_text()))


def packs(repository: Path) -> set[Path]:
    return {p for p in (repository / "data").rglob("*") if p.is_file()}


def damage_largest(files: set[Path]) -> None:
    """Flip one byte in the middle of the biggest pack: one blob no longer decrypts."""
    pack = max(files, key=os.path.getsize)
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


async def test_damaged_data_fails_the_check_the_drill_and_a_verified_restore(
    empty_repo: ResticSettings, tmp_path: Path
) -> None:
    settings = await asyncio.to_thread(copy_of, empty_repo, tmp_path)
    copy = Path(settings.repository)
    engine = ResticBackupEngine(settings)
    source = tmp_path / "app"
    source.mkdir()
    # One blob fills most of the new data pack (under restic's 512 KiB minimum chunk), so the
    # middle byte of that pack belongs to it.
    (source / "big.bin").write_bytes(os.urandom(400_000))
    (source / "small1").write_text("one")
    (source / "small2").write_text("two")
    before = await asyncio.to_thread(packs, copy)
    await engine.backup("damaged", [source], MANUAL)
    await asyncio.to_thread(damage_largest, await asyncio.to_thread(packs, copy) - before)

    check = await engine.check("100%")
    drill = await engine.drill(3, tmp_path, service_id="damaged")

    assert not check.ok
    assert any("does not match" in line or "failed" in line for line in check.problems)
    assert (drill.files_compared, drill.mismatches) == (3, (str(source / "big.bin"),))
    with pytest.raises(BackupError, match=r"^Some data in the backup repository is damaged\.$"):
        await engine.restore(drill.snapshot_id, tmp_path / "staging", verify=True)


def test_restics_messages_become_short_sentences() -> None:
    # Real restic 0.14 output; the S3 one also says it cannot open the config file.
    assert (
        explain(
            'Fatal: unable to open config file: Stat: Head "http://127.0.0.1:1/b/config": dial tcp '
            "127.0.0.1:1: connect: connection refused\nIs there a repository at the following "
            "location?\ns3:http://127.0.0.1:1/b\n",
            "snapshots",
        )
        == "The backup repository cannot be reached; is the network down?"
    )
    assert (
        explain(
            "unable to create lock in backend: repository is already locked by PID 26411 on vm by "
            "root (UID 0, GID 0)\nlock was created at 2026-11-28 21:35:27 (11.27s ago)\n",
            "forget",
        )
        == "The backup repository is locked by another restic process."
    )
    assert explain("Fatal: wrong password or no key found\n", "init") == (
        "The backup repository password is wrong."
    )
    assert explain("Fatal: something new\n", "stats") == "restic stats failed."


def test_settings_never_print_their_secrets() -> None:
    settings = ResticSettings(
        "rest:https://backup:hunter2@example.org/repo", Path("/run/keys/restic"),
        aws_access_key_id="key-id", aws_secret_access_key="aws-secret",
    )  # fmt: skip

    shown = repr(settings)

    assert "hunter2" not in shown
    assert "aws-secret" not in shown
    assert "key-id" in shown

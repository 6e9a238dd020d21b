"""sftp: repositories through a real OpenSSH server on loopback: restic's ssh command is built
from the URL with a known-hosts file and a key, and a server whose key is not in that file
gets nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.backup.base import BackupError, BackupReason
from providers.backup.restic import ResticBackupEngine, ResticSettings, sftp_command
from tests.support.restic_fixtures import local_settings, make_source_tree, tree_digests
from tests.support.sshd import Sshd, sshd_server

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
# ssh's own words when restic passes them on; the session failure when restic ends first.
UNKNOWN_KEY = "key is not in the known-hosts file|key in the known-hosts file"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def sftp_settings(
    sshd: Sshd, tmp_path: Path, password: Path, **overrides: object
) -> ResticSettings:
    values: dict[str, object] = {
        "repository": sshd.repository(tmp_path / "remote" / "repo"),
        "known_hosts_file": sshd.known_hosts,
        "ssh_key_file": sshd.client_key,
    }
    return local_settings(tmp_path, password, **{**values, **overrides})


async def test_a_backup_over_sftp_restores_the_same_files(
    sshd: Sshd, tmp_path: Path, password_file: Path
) -> None:
    engine = ResticBackupEngine(sftp_settings(sshd, tmp_path, password_file))
    source = make_source_tree(tmp_path)
    await engine.init()
    assert (tmp_path / "remote" / "repo" / "config").is_file()
    made = await engine.backup("app", [source], BackupReason.MANUAL)
    (snap,) = await engine.snapshots("app")
    assert snap.id.startswith(made.snapshot_id) or snap.short_id == made.snapshot_id
    await engine.restore(snap.id, tmp_path / "back")
    assert tree_digests(tmp_path / "back" / str(source).lstrip("/")) == tree_digests(source)


async def test_a_server_whose_key_is_not_in_the_known_hosts_file_gets_nothing(
    sshd: Sshd, tmp_path: Path, password_file: Path
) -> None:
    settings = sftp_settings(sshd, tmp_path, password_file,
                             known_hosts_file=sshd.stranger_known_hosts)  # fmt: skip
    with pytest.raises(BackupError, match=UNKNOWN_KEY):
        await ResticBackupEngine(settings).init()
    assert not (tmp_path / "remote").exists()


async def test_without_a_known_hosts_file_naming_it_the_key_is_refused_too(
    sshd: Sshd, tmp_path: Path, password_file: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    settings = sftp_settings(sshd, tmp_path, password_file, known_hosts_file=empty)
    with pytest.raises(BackupError, match=UNKNOWN_KEY):
        await ResticBackupEngine(settings).ready()
    assert empty.read_text() == ""  # StrictHostKeyChecking=yes: nothing was learnt


def test_the_ssh_command_is_built_from_the_url_as_a_list_of_words() -> None:
    command = sftp_command("sftp:backup@host.example:/srv/repo", Path("/run/kh"), None)
    assert command[-3:] == ["backup@host.example", "-s", "sftp"]
    assert "UserKnownHostsFile=/run/kh" in command
    assert "StrictHostKeyChecking=yes" in command
    assert "-p" not in command
    with pytest.raises(BackupError, match="spaces or quotes"):
        sftp_command("sftp:u@h:/r", Path("/a folder/known hosts"), None)
    with pytest.raises(BackupError, match="not an sftp"):
        sftp_command("sftp://-oProxyCommand=x/r", Path("/kh"), None)


def test_the_root_unit_backs_up_over_sftp_with_the_files_from_its_settings(
    sshd: Sshd, tmp_path: Path, password_file: Path
) -> None:
    """``steward worker`` (what steward-backup@ runs) reads the known-hosts and key files from
    STEWARD_RESTIC_KNOWN_HOSTS_FILE / STEWARD_RESTIC_SSH_KEY_FILE, as the module sets them."""
    settings = sftp_settings(sshd, tmp_path, password_file)
    asyncio.run(ResticBackupEngine(settings).init())
    data = make_source_tree(tmp_path)
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(
        json.dumps(
            {
                "services": [
                    {"id": "app", "name": "App", "units": ["app.service"], "folders": [str(data)]}
                ]
            }
        )
    )
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
        "STEWARD_STATE_DIR": str(tmp_path / "state"), "STEWARD_CATALOGUE": str(catalogue),
        "STEWARD_WORKER_DIR": str(tmp_path / "worker"),
        "STEWARD_RESTIC_REPOSITORY": settings.repository,
        "STEWARD_RESTIC_PASSWORD_FILE": str(password_file),
        "STEWARD_RESTIC_KNOWN_HOSTS_FILE": str(sshd.known_hosts),
        "STEWARD_RESTIC_SSH_KEY_FILE": str(sshd.client_key),
    }  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "bot", "worker", "backup", "app:manual"],
                          env=env, capture_output=True, timeout=90, check=False)  # fmt: skip
    status = json.loads((tmp_path / "worker" / "jobs" / "app.json").read_text())
    assert done.returncode == 0, status
    assert status["state"] == "done"
    (snap,) = asyncio.run(ResticBackupEngine(settings).snapshots("app"))
    assert str(data) in snap.paths

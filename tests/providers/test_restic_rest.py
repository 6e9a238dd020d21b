"""rest: repositories against a real rest-server on loopback (Debian trixie's, unpacked by
``make rest-server``), with an htpasswd user: the URL holds a password, so it comes from a file
(the module's ``resticRepositoryFile``) and reaches restic through its environment only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.backup.base import BackupError, BackupReason
from providers.backup.restic import ResticBackupEngine
from tests.support.fake_system import FakeSystem
from tests.support.rest_server import HINT, RestServer, rest_server, rest_server_binary
from tests.support.restic_fixtures import (
    local_settings,
    make_source_tree,
    record_calls,
    tree_digests,
)

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(rest_server_binary() is None, reason=HINT),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    with rest_server(tmp_path_factory.mktemp("rest-server")) as running:
        yield running


async def test_init_backup_and_restore_through_the_rest_server(
    server: RestServer, tmp_path: Path, password_file: Path
) -> None:
    engine = ResticBackupEngine(local_settings(tmp_path, password_file,
                                               repository=server.repository("engine")))  # fmt: skip
    assert await engine.ready() is False
    await engine.init()
    assert (server.data / "engine" / "config").is_file()
    source = make_source_tree(tmp_path)
    made = await engine.backup("app", [source], BackupReason.MANUAL)
    (snap,) = await engine.snapshots("app")
    assert snap.id.startswith(made.snapshot_id) or snap.short_id == made.snapshot_id
    await engine.restore(snap.id, tmp_path / "back", verify=True)
    assert tree_digests(tmp_path / "back" / str(source).lstrip("/")) == tree_digests(source)


async def test_a_wrong_htpasswd_password_is_refused_and_not_repeated(
    server: RestServer, tmp_path: Path, password_file: Path
) -> None:
    wrong = server.repository("engine-wrong", password="not-it")
    engine = ResticBackupEngine(local_settings(tmp_path, password_file, repository=wrong))
    with pytest.raises(BackupError) as raised:
        await engine.init()
    assert "not-it" not in str(raised.value)
    assert not (server.data / "engine-wrong" / "config").exists()


def test_the_bot_inits_backs_up_and_restores_with_the_url_from_a_file(
    server: RestServer, tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/backup init, /backup and /restore on the console, as a newcomer would on a server
    whose repository is a rest-server: the URL only in STEWARD_RESTIC_REPOSITORY_FILE."""
    calls = record_calls("restic", tmp_path, monkeypatch)
    data = make_source_tree(tmp_path)
    catalogue = tmp_path / "catalogue.json"
    service = {"id": "app", "name": "App", "units": ["app.service"], "folders": [str(data)]}
    catalogue.write_text(json.dumps({"services": [service]}))
    url_file = tmp_path / "restic-repository"
    url_file.write_text(server.repository("bot") + "\n")
    url_file.chmod(0o600)
    fake = FakeSystem(tmp_path)  # after the recorder: its PATH has restic's wrapper first
    fake.add_unit("app.service")
    env = fake.env({
        "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
        "LC_ALL": "C", "STEWARD_STATE_DIR": str(tmp_path / "state"),
        "STEWARD_CATALOGUE": str(catalogue), "STEWARD_RESTIC_REPOSITORY_FILE": str(url_file),
        "STEWARD_RESTIC_PASSWORD_FILE": str(password_file),
    })  # fmt: skip
    before = tree_digests(data)
    script = "/backup init\npress 1\nwait\n/backup app\npress 1\nwait\n"
    done = subprocess.run([sys.executable, "-m", "bot", "console"], input=script, text=True,
                          env=env, capture_output=True, timeout=90, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is ready" in done.stdout
    assert (server.data / "bot" / "config").is_file()
    assert "✅ App: snapshot" in done.stdout
    for path in data.rglob("*"):
        if path.is_file():
            path.write_bytes(b"damaged")
    restored = subprocess.run([sys.executable, "-m", "bot", "console"], env=env, text=True,
                              input="/restore app latest\npress 1\nwait\n", capture_output=True,
                              timeout=90, check=False)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert tree_digests(data) == before, restored.stdout
    said = done.stdout + done.stderr + restored.stdout + restored.stderr
    assert server.password not in said
    assert f"127.0.0.1:{server.port}/bot" in said  # where it is, without the credentials
    argvs = [call["argv"] for call in calls.calls()]
    assert {"init", "backup", "restore"} <= set(calls.commands())
    assert not [argv for argv in argvs if any(server.password in arg or
                                              "rest:" in arg for arg in argv)]  # fmt: skip
    assert all(call["env"].get("RESTIC_REPOSITORY") == server.repository("bot")
               for call in calls.calls())  # fmt: skip
    assert asyncio.run(ResticBackupEngine(local_settings(tmp_path, password_file,
                       repository=server.repository("bot"))).snapshots("app"))  # fmt: skip

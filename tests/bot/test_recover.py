"""``steward recover``, the whole round trip with real restic and real processes: a server's
state (a database with audit rows, a desired state, /etc/nixos, DKIM keys, a service's data),
its backups by ``steward worker`` (what the root units run), then a new server with an empty
state folder and no service data, then ``steward recover``: the state and the data are back,
and the bot starts with its old audit log."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.recover import consistent_set
from providers.backup.base import SELF, Snapshot
from providers.backup.restic import ResticBackupEngine, ResticSettings
from providers.host.catalogue import ServiceCatalogue
from tests.support.fake_system import FakeSystem
from tests.support.restic_fixtures import copy_of, tree_digests

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = {"services": [{"id": "app", "name": "App", "units": ["app.service"],
                           "folders": []}]}  # fmt: skip


class Server:
    """One machine's folders; the repository outlives it."""

    def __init__(self, root: Path, repo: ResticSettings) -> None:
        self.root, self.repo = root, repo
        self.state, self.data = root / "state", root / "srv" / "app"
        self.nixos, self.dkim = root / "etc" / "nixos", root / "var" / "dkim"
        self.catalogue = root / "catalogue.json"
        self.fake = FakeSystem(root / "fake")
        self.fake.add_unit("app.service")

    def env(self) -> dict[str, str]:
        return self.fake.env({
            "HOME": str(self.root), "PYTHONPATH": str(ROOT), "LC_ALL": "C",
            "STEWARD_STATE_DIR": str(self.state), "STEWARD_CATALOGUE": str(self.catalogue),
            "STEWARD_NIXOS_CONFIG_DIR": str(self.nixos),
            "STEWARD_DKIM_FILE": str(self.dkim / "mail.key"),
            "STEWARD_RESTIC_REPOSITORY": self.repo.repository,
            "STEWARD_RESTIC_PASSWORD_FILE": str(self.repo.password_file),
        })  # fmt: skip

    def steward(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bot", *args]
        return subprocess.run(argv, input=stdin, text=True, env=self.env(),
                              capture_output=True, timeout=120, check=False)  # fmt: skip


def build_old_server(server: Server) -> None:
    server.state.mkdir(parents=True)
    (server.data / "uploads").mkdir(parents=True)
    (server.data / "uploads" / "photo.bin").write_bytes(bytes(range(256)) * 40)
    (server.data / "app.conf").write_text("greeting = hello\n")
    server.nixos.mkdir(parents=True)
    (server.nixos / "configuration.nix").write_text(
        "{ ... }: { services.steward.enable = true; }\n"
    )
    (server.nixos / "hardware-configuration.nix").write_text("# the old machine\n")
    server.dkim.mkdir(parents=True)
    (server.dkim / "mail.key").write_text("-----BEGIN PRIVATE KEY-----\nold\n")
    (server.dkim / "mail.key").chmod(0o600)
    catalogue = json.loads(json.dumps(CATALOGUE))
    catalogue["services"][0]["folders"] = [str(server.data)]
    server.catalogue.write_text(json.dumps(catalogue))
    (server.state / "desired-state.json").write_text(json.dumps({"services": {"app": True}}))


@pytest.fixture
def repo(tmp_path: Path, empty_repo: ResticSettings) -> ResticSettings:
    return copy_of(empty_repo, tmp_path)


def test_a_new_server_comes_back_with_its_state_data_and_audit_log(
    tmp_path: Path, repo: ResticSettings
) -> None:
    old = Server(tmp_path / "machine", repo)
    build_old_server(old)
    said = old.steward("console", stdin="/audit\n/backups\n")
    assert said.returncode == 0, said.stderr
    for instance in ("app:scheduled", f"{SELF}:scheduled"):
        done = old.steward("worker", "backup", instance)
        assert done.returncode == 0, done.stderr
    data_before = tree_digests(old.data)
    nixos_before, dkim_before = tree_digests(old.nixos), tree_digests(old.dkim)
    desired_before = (old.state / "desired-state.json").read_text()
    catalogue_before = old.catalogue.read_text()

    # The machine is lost; a new one is installed: empty state folder, no data, its own nixos.
    for path in (old.state, old.data, old.nixos, old.dkim, old.catalogue, old.root / "fake"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    new = Server(tmp_path / "machine", repo)
    new.state.mkdir()
    new.nixos.mkdir(parents=True)
    (new.nixos / "hardware-configuration.nix").write_text("# the new machine\n")

    recovered = new.steward("recover", "--yes")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "  app " in recovered.stdout  # the set offered
    assert "✓ app:" in recovered.stdout

    assert tree_digests(new.data) == data_before
    assert tree_digests(new.nixos) == nixos_before
    assert (tmp_path / "machine" / "etc" / "nixos.before-recover" / "hardware-configuration.nix"
            ).read_text() == "# the new machine\n"  # fmt: skip
    assert tree_digests(new.dkim) == dkim_before
    assert (new.dkim / "mail.key").stat().st_mode & 0o777 == 0o600
    assert (new.state / "desired-state.json").read_text() == desired_before
    assert new.catalogue.read_text() == catalogue_before
    calls = new.fake.calls("systemctl")
    assert any("stop" in call and "app.service" in call for call in calls)
    assert any("start" in call and "app.service" in call for call in calls)

    shown = new.steward("console", stdin="/audit 20\n")
    assert shown.returncode == 0, shown.stderr
    assert "/backups → ok" in shown.stdout  # a row of the old server
    assert "recover app" in shown.stdout


def test_declining_the_set_restores_stewards_state_but_no_service_data(
    tmp_path: Path, repo: ResticSettings
) -> None:
    old = Server(tmp_path / "machine", repo)
    build_old_server(old)
    assert old.steward("console", stdin="/audit\n").returncode == 0
    assert old.steward("worker", "backup", "app:manual").returncode == 0
    assert old.steward("worker", "backup", f"{SELF}:manual").returncode == 0
    shutil.rmtree(old.state)
    shutil.rmtree(old.data)
    old.state.mkdir()
    declined = old.steward("recover", stdin="no\n")
    assert declined.returncode == 1
    assert "The services' data was not restored." in declined.stdout
    assert (old.state / "steward.db").is_file()
    assert not old.data.exists()
    assert old.fake.calls("systemctl") == []


def test_without_a_snapshot_of_steward_it_says_so_and_changes_nothing(
    tmp_path: Path, repo: ResticSettings
) -> None:
    server = Server(tmp_path / "machine", repo)
    server.state.mkdir(parents=True)
    done = server.steward("recover", "--yes")
    assert done.returncode == 1
    assert "There is no snapshot of Steward itself in this repository." in done.stderr
    assert [path.name for path in server.state.iterdir()] == ["restic-cache"]  # restic's own
    assert asyncio.run(ResticBackupEngine(repo).snapshots()) == []


def snap(service: str, minutes: float, reason: str = "scheduled") -> Snapshot:
    at = datetime(2026, 12, 1, 3, 30, tzinfo=UTC) + timedelta(minutes=minutes)
    return Snapshot(f"{service}{minutes:+}".ljust(8, "0"), service[:8], at,
                    (f"service:{service}", f"reason:{reason}"), ("/srv/x",), "old")  # fmt: skip


def test_the_set_is_each_services_newest_snapshot_within_an_hour_of_stewards() -> None:
    catalogue = ServiceCatalogue.from_json({"services": [
        {"id": "app", "name": "App", "units": ["a.service"], "folders": ["/srv/x"]},
        {"id": "mail", "name": "Mail", "units": ["m.service"], "folders": ["/srv/x"]},
        {"id": "web", "name": "Web", "units": ["w.service"], "folders": []},
    ]})  # fmt: skip
    own = snap(SELF, 0)
    every = [own, snap("app", -50), snap("app", -5), snap("app", 61),
             snap("app", 10, "pre-restore"), snap("mail", -90), snap("web", 0)]  # fmt: skip
    chosen = {info.id: s.time for info, s in consistent_set(every, own, catalogue)}
    assert chosen == {"app": own.time - timedelta(minutes=5)}

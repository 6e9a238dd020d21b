"""``steward recover`` in unit mode (STEWARD_BACKUP_UNITS=1, as on NixOS): the old server's
snapshots are not in the new server's ledger, so ``steward-restore@`` refuses them; recover,
run by root, restores them through ``steward-restore-foreign@`` (fake systemctl running the
real ``steward worker`` with real restic). A service the root units' catalogue does not know
yet is left for ``steward recover --services`` after the rebuild."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.recover import NOT_ROOT, recover
from providers.backup.base import SELF
from providers.backup.restic import ResticSettings
from tests.bot.test_recover import Server, build_old_server
from tests.support.restic_fixtures import copy_of, tree_digests

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(240)


class UnitServer(Server):
    """A server whose backups and restores run in the root units; the catalogue is a link, as
    NixOS's /etc/steward/catalogue.json is one into the store."""

    def __init__(self, root: Path, repo: ResticSettings) -> None:
        super().__init__(root, repo)
        self.worker = root / "var" / "lib" / "steward-worker"
        self.store = root / "store"
        with self.fake.edit() as state:
            argv = [sys.executable, "-m", "bot", "worker"]
            state["data_worker"] = {"argv": argv, "env": self.env()}

    def env(self) -> dict[str, str]:
        return {**super().env(), "STEWARD_BACKUP_UNITS": "1",
                "STEWARD_WORKER_DIR": str(self.worker)}  # fmt: skip

    def configure(self, catalogue: dict[str, object]) -> None:
        """What a rebuild does: a new catalogue in the store, the link pointed at it."""
        self.store.mkdir(parents=True, exist_ok=True)
        target = self.store / f"catalogue-{len(list(self.store.iterdir()))}.json"
        target.write_text(json.dumps(catalogue))
        self.catalogue.unlink(missing_ok=True)
        self.catalogue.symlink_to(target)


@pytest.fixture
def repo(tmp_path: Path, empty_repo: ResticSettings) -> ResticSettings:
    return copy_of(empty_repo, tmp_path)


def starts(server: Server) -> list[str]:
    return [call[-1] for call in server.fake.calls("systemctl") if "start" in call]


def test_recover_restores_the_old_servers_snapshots_through_the_foreign_unit(
    tmp_path: Path, repo: ResticSettings
) -> None:
    old = UnitServer(tmp_path / "machine", repo)
    build_old_server(old)
    catalogue = json.loads(old.catalogue.read_text())
    old.configure(catalogue)
    assert old.steward("console", stdin="/audit\n").returncode == 0
    for instance in ("app:scheduled", f"{SELF}:scheduled"):
        done = old.steward("worker", "backup", instance)
        assert done.returncode == 0, done.stderr
    data_before = tree_digests(old.data)

    # A new machine: its own worker folder (an empty ledger) and a catalogue without app.
    for path in (old.state, old.data, old.nixos, old.dkim, old.worker, old.root / "fake"):
        shutil.rmtree(path)
    new = UnitServer(tmp_path / "machine", repo)
    new.state.mkdir()
    new.configure({"services": []})

    first = new.steward("recover", "--yes")
    assert first.returncode == 1, first.stdout + first.stderr
    own = next(line for line in first.stdout.splitlines() if line.startswith("Steward's own"))
    own_id = own.split()[3].rstrip(",")
    assert "✗ app: this server's root units do not know it as the old server did yet." in (
        first.stdout
    )
    assert f"steward recover --services --snapshot {own_id}" in first.stdout
    assert not new.data.exists()
    assert starts(new) == []
    # Steward's own part is back: the old catalogue beside the database, the state in place.
    assert json.loads((new.state / "recovered-catalogue.json").read_text()) == catalogue
    assert (new.state / "steward.db").is_file()
    assert not (new.state / "restic-cache").exists()  # root's cache is in its own folder

    # The snapshot is the old server's: steward-restore@ (what the bot may start) refuses it.
    new.configure(catalogue)  # nixos-rebuild switch from the recovered /etc/nixos
    snapshot = next(line.split()[1] for line in first.stdout.splitlines()
                    if line.startswith("  app "))  # fmt: skip
    refused = new.steward("worker", "restore", f"app:{snapshot}")
    assert refused.returncode == 1
    status = json.loads((new.worker / "jobs" / "app.json").read_text())
    assert "was not taken by this server's backup units" in status["error"]
    assert not new.data.exists()

    second = new.steward("recover", "--services", "--snapshot", own_id, "--yes")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "✓ app:" in second.stdout
    assert "database →" not in second.stdout  # Steward's own part is not restored twice
    assert tree_digests(new.data) == data_before
    (started,) = [u for u in starts(new) if u.startswith("steward-restore")]
    assert started.startswith(f"steward-restore-foreign@app:{snapshot}")  # the full id
    status = json.loads((new.worker / "jobs" / "app.json").read_text())
    assert status["state"] == "done"
    assert status["unit"] == started

    shown = new.steward("console", stdin="/audit 20\n")
    assert "recover app" in shown.stdout


def test_in_unit_mode_anyone_but_root_gets_a_short_answer_and_nothing_changes(
    tmp_path: Path, repo: ResticSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    state = tmp_path / "state"
    state.mkdir()
    settings = load_settings(
        state_dir=state, backup_units=True, worker_dir=tmp_path / "worker",
        restic_repository=repo.repository, restic_password_file=repo.password_file,
    )  # fmt: skip
    monkeypatch.setattr(os, "geteuid", lambda: 990)
    assert recover(settings, yes=True) == 2
    assert capsys.readouterr().err.strip() == NOT_ROOT
    assert list(state.iterdir()) == []
    assert not (tmp_path / "worker").exists()

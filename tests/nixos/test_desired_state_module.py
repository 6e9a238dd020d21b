"""nixos/desired-state.nix applies what root admitted of the file the bot writes: the bot's own
DesiredStateFile writes it, ``steward admit`` (as the rebuild unit runs it) checks and copies
it, and the module, evaluated with the stub lib, reads the copy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyotp

from providers.nixos.desired import DesiredStateFile
from tests.nixos.test_module import HERE, ROOT, nix, nix_env

__all__ = ["nix_env"]  # the fixture, imported for this module's tests

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
FINGERPRINT = "SHA256:4V6Me0geGbV4rC8dmpfNWrD3aX5MKtBJlNQ+Je/AZUc"


SECRET = pyotp.random_base32()


def admit(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``steward admit`` as the rebuild unit runs it, before anything is evaluated."""
    catalogue = state_dir / "catalogue.json"
    if not catalogue.exists():
        service = {"id": "nextcloud", "name": "Nextcloud", "units": ["nextcloud.service"]}
        catalogue.write_text(json.dumps({"services": [service]}))
    return subprocess.run(
        [sys.executable, "-m", "bot", "admit", "--source", str(state_dir / "desired-state.json"),
         "--state-dir", str(state_dir / "root"), "--catalogue", str(catalogue), *extra],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def evaluate(env: dict[str, str], state_dir: Path) -> dict[str, Any]:
    done = nix(
        env, "--eval", "--strict", "--json", str(HERE / "eval-desired.nix"),
        "--argstr", "admittedStateFile", str(state_dir / "root" / "desired-state.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_no_file_yet_changes_nothing(nix_env: dict[str, str], tmp_path: Path) -> None:
    result = evaluate(nix_env, tmp_path)
    assert result["desired"] == {"version": 1, "services": {}, "system": {}}
    config = result["config"]
    assert config.get("time", {}) == {}
    assert "autoUpgrade" not in config["system"]
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == []
    assert config["services"] == {"openssh": {"settings": {}}}


def test_the_bots_choices_reach_the_configuration(nix_env: dict[str, str], tmp_path: Path) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    store.update_sync(
        lambda s: s.with_service("nextcloud", enable=True).with_system(
            timezone="Europe/Berlin", auto_upgrade=True, allow_reboot=False,
            ssh_password_auth=False, root_keys=(KEY,),
            root_key_codes=((FINGERPRINT, pyotp.TOTP(SECRET).now(), int(time.time())),),
        )
    )  # fmt: skip
    secret = tmp_path / "root-key-totp"
    secret.write_text(SECRET + "\n")
    done = admit(tmp_path, "--root-key-totp", str(secret))
    assert done.returncode == 0, done.stderr
    assert f"steward: root key {FINGERPRINT} approved by its TOTP code" in done.stdout
    result = evaluate(nix_env, tmp_path)
    assert result["desired"]["services"]["nextcloud"]["enable"] is True
    config = result["config"]
    assert config["time"]["timeZone"] == "Europe/Berlin"
    assert config["system"]["autoUpgrade"] == {"enable": True, "allowReboot": False}
    assert config["services"]["openssh"]["settings"]["PasswordAuthentication"] is False
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [KEY]
    assert all(a["assertion"] for a in config["assertions"])


def test_an_unknown_version_fails_the_build_with_its_reason(
    nix_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "desired-state.json").write_text(
        '{"version": 2, "services": {}, "system": {}}'
    )
    (assertion,) = evaluate(nix_env, tmp_path)["config"]["assertions"]
    assert assertion["assertion"] is False
    assert "unknown version" in assertion["message"]


def test_a_root_key_planted_in_the_bots_file_stops_the_rebuild_and_reaches_nothing(
    nix_env: dict[str, str], tmp_path: Path
) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    store.update_sync(lambda s: s.with_system(timezone="Europe/Berlin"))
    assert admit(tmp_path).returncode == 0
    # Anything running as steward writes the file as it likes, and starts a rebuild.
    data = json.loads((tmp_path / "desired-state.json").read_text())
    data["system"]["ssh"] = {"rootKeys": [KEY]}
    (tmp_path / "desired-state.json").write_text(json.dumps(data))
    done = admit(tmp_path)  # allowRootKeysFromChat off: no credential is passed
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "steward: desired state refused: system.ssh.rootKeys: root keys from chat are off "
        "(services.steward.allowRootKeysFromChat); remove them with /sshkey remove"
    )
    config = evaluate(nix_env, tmp_path)["config"]
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == []
    assert config["time"]["timeZone"] == "Europe/Berlin"  # what root admitted before
    # On, but with no code (or a wrong one), the key is refused all the same.
    secret = tmp_path / "root-key-totp"
    secret.write_text(SECRET)
    done = admit(tmp_path, "--root-key-totp", str(secret))
    assert done.returncode == 1
    assert f"root key {FINGERPRINT} carries no TOTP code" in done.stderr
    data["system"]["ssh"]["rootKeyCodes"] = {
        FINGERPRINT: {"code": "000000", "at": int(time.time())}
    }
    (tmp_path / "desired-state.json").write_text(json.dumps(data))
    done = admit(tmp_path, "--root-key-totp", str(secret))
    assert done.returncode == 1 or pyotp.TOTP(SECRET).now() == "000000"
    assert evaluate(nix_env, tmp_path)["config"]["users"]["users"]["root"]["openssh"][
        "authorizedKeys"]["keys"] == []  # fmt: skip


def test_a_link_in_place_of_the_bots_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text('{"version": 1, "services": {}, "system": {"timezone": "UTC"}}')
    (tmp_path / "desired-state.json").symlink_to(secret)
    done = admit(tmp_path)
    assert done.returncode == 1
    assert "cannot be opened" in done.stderr
    assert not (tmp_path / "root" / "desired-state.json").exists()

"""nixos/desired-state.nix applies the file the bot writes: evaluated with the stub lib, on a
file written by the bot's own DesiredStateFile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from providers.nixos.desired import DesiredStateFile
from tests.nixos.test_module import HERE, nix, nix_env

__all__ = ["nix_env"]  # the fixture, imported for this module's tests

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"


def evaluate(env: dict[str, str], state_dir: Path) -> dict[str, Any]:
    done = nix(
        env, "--eval", "--strict", "--json", str(HERE / "eval-desired.nix"),
        "--argstr", "stateDir", str(state_dir),
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
        )
    )  # fmt: skip
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
    (tmp_path / "desired-state.json").write_text('{"version": 2, "services": {}, "system": {}}')
    (assertion,) = evaluate(nix_env, tmp_path)["config"]["assertions"]
    assert assertion["assertion"] is False
    assert "unknown version" in assertion["message"]

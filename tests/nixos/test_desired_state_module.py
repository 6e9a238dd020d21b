"""nixos/desired-state.nix applies the file the bot writes, and a plain rebuild sees the same.

The bot writes into a folder of the configuration (/etc/nixos/steward); the configuration reads
it as a path of its own. Here a temporary folder plays /etc/nixos. The pure evaluation runs in
Nix's restricted mode with only that folder and this repository visible, as a flake's
evaluation sees only its source; the bot's own is what its rebuild unit used to run
(unrestricted, --impure); and the bot's own view is what its DesiredStateFile reads. All three
must agree, before the bot's first start, after it, and after changes from chat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.catalogue import ServiceCatalogue
from providers.nixos.desired import DesiredStateFile, first_start
from tests.nixos.test_module import HERE, ROOT, nix, nix_env

__all__ = ["nix_env"]  # the fixture, imported for this module's tests

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
# As a user writes the catalogue: Nextcloud ran before Steward came, Vaultwarden did not.
SERVICES = """{
  nextcloud = { alreadyRunning = true; };
  vaultwarden = { };
}"""
CATALOGUE = ServiceCatalogue.from_json({"services": [
    {"id": "nextcloud", "units": ["phpfpm-nextcloud.service"], "already_running": True},
    {"id": "vaultwarden", "units": ["vaultwarden.service"]},
]})  # fmt: skip


@pytest.fixture
def etc_nixos(tmp_path: Path) -> Path:
    folder = tmp_path / "etc-nixos"
    (folder / "steward").mkdir(parents=True)
    return folder


def evaluate(
    env: dict[str, str], config_dir: Path | None, *, pure: bool, visible: Path | None = None
) -> dict[str, Any]:
    """``config_dir``: the configuration folder whose steward/desired-state.json is read;
    ``visible``: the folder a pure evaluation may read (``config_dir`` unless given)."""
    file = "null" if config_dir is None else str(config_dir / "steward" / "desired-state.json")
    # Restricted mode: only what a flake's evaluation could see, its source and the module.
    restricted = ["--option", "restrict-eval", "true", "-I", str(ROOT)]
    if (visible or config_dir) is not None:
        restricted += ["-I", str(visible or config_dir)]
    done = nix(
        env, *(restricted if pure else []), "--eval", "--strict", "--json",
        str(HERE / "eval-desired.nix"), "--arg", "file", file, "--arg", "services", SERVICES,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bot_store(config_dir: Path) -> DesiredStateFile:
    return DesiredStateFile(config_dir / "steward" / "desired-state.json")


def agree(env: dict[str, str], config_dir: Path) -> dict[str, Any]:
    """The pure and the bot's own evaluation, which must be equal; the one result."""
    pure = evaluate(env, config_dir, pure=True)
    assert pure == evaluate(env, config_dir, pure=False)
    return pure


def test_before_the_first_start_the_services_already_running_stay_on(
    nix_env: dict[str, str], etc_nixos: Path
) -> None:
    result = agree(nix_env, etc_nixos)
    assert result["desired"] == {"version": 1, "services": {"nextcloud": {"enable": True}},
                                 "system": {}}  # fmt: skip
    config = result["config"]
    assert config.get("time", {}) == {}
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == []
    assert all(a["assertion"] for a in config["assertions"])


def test_the_bots_first_start_records_what_the_build_already_assumed(
    nix_env: dict[str, str], etc_nixos: Path
) -> None:
    before = agree(nix_env, etc_nixos)
    store = bot_store(etc_nixos)
    running = [sid for sid in CATALOGUE if CATALOGUE[sid].already_running]
    assert store.create_sync(first_start(running))
    after = agree(nix_env, etc_nixos)
    assert after == before  # a first deploy, and the first start after it, change nothing
    assert after["desired"] == store.read_sync().to_json()
    assert not store.create_sync(first_start([]))  # only ever the first time


def test_the_bots_choices_reach_a_plain_rebuild_as_they_reach_its_own(
    nix_env: dict[str, str], etc_nixos: Path
) -> None:
    store = bot_store(etc_nixos)
    store.update_sync(
        lambda s: s.with_service("vaultwarden", enable=True).with_service("nextcloud", enable=False)
        .with_system(timezone="Europe/Berlin", auto_upgrade=True, allow_reboot=False,
                     ssh_password_auth=False, root_keys=(KEY,))
    )  # fmt: skip
    result = agree(nix_env, etc_nixos)
    assert result["desired"] == store.read_sync().to_json()  # the bot's own view
    assert result["desired"]["services"] == {"nextcloud": {"enable": False},
                                             "vaultwarden": {"enable": True}}  # fmt: skip
    config = result["config"]
    assert config["time"]["timeZone"] == "Europe/Berlin"
    assert config["system"]["autoUpgrade"] == {"enable": True, "allowReboot": False}
    assert config["services"]["openssh"]["settings"]["PasswordAuthentication"] is False
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [KEY]
    assert all(a["assertion"] for a in config["assertions"])


def test_a_desired_state_outside_the_configuration_is_invisible_to_a_pure_build(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    """Why the file moved out of the state folder: there, only --impure saw it, and a pure
    build silently took it for missing (the trap of issue #20)."""
    state_dir = tmp_path / "var-lib-steward"
    (state_dir / "steward").mkdir(parents=True)
    bot_store(state_dir).create_sync(first_start(["vaultwarden"]))
    pure = evaluate(nix_env, state_dir, pure=True, visible=etc_nixos)
    impure = evaluate(nix_env, state_dir, pure=False)
    assert impure["desired"]["services"] == {"vaultwarden": {"enable": True}}
    assert pure["desired"]["services"] == {"nextcloud": {"enable": True}}  # the file unseen


def test_without_desired_state_file_the_build_says_how_to_set_it(
    nix_env: dict[str, str],
) -> None:
    failed = [a["message"] for a in evaluate(nix_env, None, pure=False)["config"]["assertions"]
              if not a["assertion"]]  # fmt: skip
    assert len(failed) == 1
    assert "desiredStateFile is not set" in failed[0]
    assert "./steward/desired-state.json" in failed[0]


def test_an_unknown_version_fails_the_build_with_its_reason(
    nix_env: dict[str, str], etc_nixos: Path
) -> None:
    (etc_nixos / "steward" / "desired-state.json").write_text(
        '{"version": 2, "services": {}, "system": {}}'
    )
    assertions = agree(nix_env, etc_nixos)["config"]["assertions"]
    (failed,) = [a for a in assertions if not a["assertion"]]
    assert "unknown version" in failed["message"]

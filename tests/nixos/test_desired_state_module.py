"""nixos/desired-state.nix applies what root admitted, and a plain rebuild sees the same.

The bot writes its proposal in its own state folder (DesiredStateFile). ``steward admit``, as
the rebuild units run it as root, checks it and writes what passed into a folder of the
configuration (/etc/nixos/steward), which the configuration reads as a path of its own. Here
temporary folders play /var/lib/steward, /var/lib/steward-rebuild and /etc/nixos (a git
work tree, as a flake's). The pure evaluation runs in Nix's restricted mode with only the
configuration and this repository visible, as a flake's evaluation sees only its source; the
impure one is what the rebuild units used to run (--impure); and the bot's own view is what
its DesiredStateFile reads. All three must agree, before the bot's first start, after it, and
after changes from chat, each time through admission.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyotp
import pytest

from providers.host.catalogue import ServiceCatalogue
from providers.nixos.base import DesiredState
from providers.nixos.desired import DesiredStateFile, first_start
from tests.nixos.test_module import HERE, ROOT, nix, nix_env

__all__ = ["nix_env"]  # the fixture, imported for this module's tests

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
FINGERPRINT = "SHA256:4V6Me0geGbV4rC8dmpfNWrD3aX5MKtBJlNQ+Je/AZUc"
SECRET = pyotp.random_base32()

# As a user writes the catalogue: Nextcloud ran before Steward came, Vaultwarden did not.
SERVICES = """{
  nextcloud = { alreadyRunning = true; };
  vaultwarden = { };
}"""
CATALOGUE_JSON = {"services": [
    {"id": "nextcloud", "units": ["phpfpm-nextcloud.service"], "already_running": True},
    {"id": "vaultwarden", "units": ["vaultwarden.service"]},
]}  # fmt: skip
CATALOGUE = ServiceCatalogue.from_json(CATALOGUE_JSON)


@pytest.fixture
def etc_nixos(tmp_path: Path) -> Path:
    """The configuration, a git work tree as a flake's is; its steward folder is made by
    admission (tmpfiles on a real system)."""
    folder = tmp_path / "etc-nixos"
    folder.mkdir(mode=0o755)
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=30)
    return folder


def admitted_file(config_dir: Path) -> Path:
    return config_dir / "steward" / "desired-state.json"


def bot_store(tmp_path: Path) -> DesiredStateFile:
    """The bot's own file, in its state folder: never read by the configuration."""
    return DesiredStateFile(tmp_path / "var-lib-steward" / "desired-state.json")


def admit(tmp_path: Path, config_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``steward admit`` as the rebuild unit runs it, before anything is evaluated."""
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(CATALOGUE_JSON))
    return subprocess.run(
        [sys.executable, "-m", "bot", "admit",
         "--source", str(tmp_path / "var-lib-steward" / "desired-state.json"),
         "--state-dir", str(tmp_path / "var-lib-steward-rebuild"),
         "--admitted", str(admitted_file(config_dir)), "--flake", str(config_dir),
         "--catalogue", str(catalogue), *extra],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def evaluate(
    env: dict[str, str], config_dir: Path | None, *, pure: bool, visible: Path | None = None
) -> dict[str, Any]:
    """``config_dir``: the configuration folder whose steward/desired-state.json is read;
    ``visible``: the folder a pure evaluation may read (``config_dir`` unless given)."""
    file = "null" if config_dir is None else str(admitted_file(config_dir))
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


def agree(env: dict[str, str], config_dir: Path) -> dict[str, Any]:
    """The pure and the impure evaluation, which must be equal; the one result."""
    pure = evaluate(env, config_dir, pure=True)
    assert pure == evaluate(env, config_dir, pure=False)
    return pure


def as_admitted(state: DesiredState) -> dict[str, Any]:
    """The bot's view as root applies it: the codes that proved root keys are not kept."""
    return replace(state, system=replace(state.system, root_key_codes=())).to_json()


def known_to_git(config_dir: Path) -> list[str]:
    done = subprocess.run(
        ["git", "-C", str(config_dir), "ls-files"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.split()


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
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    before = agree(nix_env, etc_nixos)
    store = bot_store(tmp_path)
    running = [sid for sid in CATALOGUE if CATALOGUE[sid].already_running]
    assert store.create_sync(first_start(running))
    done = admit(tmp_path, etc_nixos)
    assert done.returncode == 0, done.stderr
    after = agree(nix_env, etc_nixos)
    assert after == before  # a first deploy, and the first start after it, change nothing
    assert after["desired"] == as_admitted(store.read_sync())
    # New to the flake, so added to git, or a flake's evaluation would not see it.
    assert known_to_git(etc_nixos) == ["steward/desired-state.json"]
    assert not store.create_sync(first_start([]))  # only ever the first time


def test_the_bots_choices_reach_a_plain_rebuild_through_root_as_they_reach_its_own(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    store = bot_store(tmp_path)
    store.update_sync(
        lambda s: s.with_service("vaultwarden", enable=True).with_service("nextcloud", enable=False)
        .with_system(timezone="Europe/Berlin", auto_upgrade=True, allow_reboot=False,
                     ssh_password_auth=False, root_keys=(KEY,),
                     root_key_codes=((FINGERPRINT, pyotp.TOTP(SECRET).now(), int(time.time())),))
    )  # fmt: skip
    secret = tmp_path / "root-key-totp"
    secret.write_text(SECRET + "\n")
    done = admit(tmp_path, etc_nixos, "--root-key-totp", str(secret))
    assert done.returncode == 0, done.stderr
    assert f"steward: root key {FINGERPRINT} approved by its TOTP code" in done.stdout
    result = agree(nix_env, etc_nixos)
    assert result["desired"] == as_admitted(store.read_sync())  # the bot's own view
    assert result["desired"]["services"] == {"nextcloud": {"enable": False},
                                             "vaultwarden": {"enable": True}}  # fmt: skip
    config = result["config"]
    assert config["time"]["timeZone"] == "Europe/Berlin"
    assert config["system"]["autoUpgrade"] == {"enable": True, "allowReboot": False}
    assert config["services"]["openssh"]["settings"]["PasswordAuthentication"] is False
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [KEY]
    assert all(a["assertion"] for a in config["assertions"])


def test_a_plain_rebuild_applies_what_root_last_admitted_and_nothing_the_bot_wrote_since(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    """A rollback, then a manual rebuild: the bot has put its proposal back (as after a failed
    or rolled-back rebuild), but only admission moves the configuration's copy."""
    store = bot_store(tmp_path)
    store.update_sync(lambda s: s.with_service("vaultwarden", enable=True))
    assert admit(tmp_path, etc_nixos).returncode == 0
    written = store.update_sync(lambda s: s.with_system(timezone="Europe/Berlin"))
    assert admit(tmp_path, etc_nixos).returncode == 0
    admitted = agree(nix_env, etc_nixos)
    assert admitted["config"]["time"]["timeZone"] == "Europe/Berlin"
    assert store.restore_sync(written.digest)  # the bot's file is back at the first choice
    assert agree(nix_env, etc_nixos) == admitted  # a manual rebuild: root's copy, unchanged
    assert admit(tmp_path, etc_nixos).returncode == 0
    now = agree(nix_env, etc_nixos)
    assert now["desired"] == as_admitted(store.read_sync())
    assert now["config"].get("time", {}) == {}


def test_a_desired_state_outside_the_configuration_is_invisible_to_a_pure_build(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    """Why root writes the admitted copy into the configuration: in a state folder, only
    --impure saw it, and a pure build silently took it for missing (the trap of issue #20)."""
    state_dir = tmp_path / "var-lib-steward-rebuild"
    admitted_file(state_dir).parent.mkdir(parents=True)
    DesiredStateFile(admitted_file(state_dir)).create_sync(first_start(["vaultwarden"]))
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
    admitted_file(etc_nixos).parent.mkdir()
    admitted_file(etc_nixos).write_text('{"version": 2, "services": {}, "system": {}}')
    assertions = agree(nix_env, etc_nixos)["config"]["assertions"]
    (failed,) = [a for a in assertions if not a["assertion"]]
    assert "unknown version" in failed["message"]


def test_a_root_key_planted_in_the_bots_file_stops_the_rebuild_and_reaches_nothing(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    store = bot_store(tmp_path)
    store.update_sync(lambda s: s.with_system(timezone="Europe/Berlin"))
    assert admit(tmp_path, etc_nixos).returncode == 0
    # Anything running as steward writes the file as it likes, and starts a rebuild.
    data = json.loads(store.path.read_text())
    data["system"]["ssh"] = {"rootKeys": [KEY]}
    store.path.write_text(json.dumps(data))
    done = admit(tmp_path, etc_nixos)  # allowRootKeysFromChat off: no credential is passed
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "steward: desired state refused: system.ssh.rootKeys: root keys from chat are off "
        "(services.steward.allowRootKeysFromChat); remove them with /sshkey remove"
    )
    config = agree(nix_env, etc_nixos)["config"]  # a plain rebuild, too
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == []
    assert config["time"]["timeZone"] == "Europe/Berlin"  # what root admitted before
    # On, but with no code (or a wrong one), the key is refused all the same.
    secret = tmp_path / "root-key-totp"
    secret.write_text(SECRET)
    done = admit(tmp_path, etc_nixos, "--root-key-totp", str(secret))
    assert done.returncode == 1
    assert f"root key {FINGERPRINT} carries no TOTP code" in done.stderr
    data["system"]["ssh"]["rootKeyCodes"] = {
        FINGERPRINT: {"code": "000000", "at": int(time.time())}
    }
    store.path.write_text(json.dumps(data))
    done = admit(tmp_path, etc_nixos, "--root-key-totp", str(secret))
    assert done.returncode == 1 or pyotp.TOTP(SECRET).now() == "000000"
    assert agree(nix_env, etc_nixos)["config"]["users"]["users"]["root"]["openssh"][
        "authorizedKeys"]["keys"] == []  # fmt: skip


def test_a_link_in_place_of_the_bots_file_is_not_followed(etc_nixos: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text('{"version": 1, "services": {}, "system": {"timezone": "UTC"}}')
    bot_store(tmp_path).path.parent.mkdir()
    bot_store(tmp_path).path.symlink_to(secret)
    done = admit(tmp_path, etc_nixos)
    assert done.returncode == 1
    assert "cannot be opened" in done.stderr
    assert not admitted_file(etc_nixos).exists()


def test_a_configuration_folder_others_may_write_is_refused(
    nix_env: dict[str, str], etc_nixos: Path, tmp_path: Path
) -> None:
    """Were the bot able to write the folder, it could swap root's copy after the check."""
    store = bot_store(tmp_path)
    store.update_sync(lambda s: s.with_service("vaultwarden", enable=True))
    assert admit(tmp_path, etc_nixos).returncode == 0
    before = admitted_file(etc_nixos).read_bytes()
    store.update_sync(lambda s: s.with_service("nextcloud", enable=False))
    os.chmod(admitted_file(etc_nixos).parent, 0o777)  # noqa: S103 - the point of the test
    done = admit(tmp_path, etc_nixos)
    assert done.returncode == 1
    assert "may be written by others than root" in done.stderr
    assert admitted_file(etc_nixos).read_bytes() == before

"""The NixOS module, checked with Debian's Nix 2.8 and systemd: no nixpkgs, no store, no VM.

Every .nix file must parse. nixos/module.nix is evaluated with tests/nixos/stub-lib.nix (a
small lib with a miniature module system) through tests/nixos/eval.nix, and the bot's unit is
rendered to a unit file for `systemd-analyze verify`. The VM test (nixos/tests/vm.nix) needs
nixpkgs and KVM; it runs in `nix flake check`, not here.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from providers.host.base import systemd_escape_path
from providers.host.catalogue import ServiceCatalogue
from tests.support import nixos_eval

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODULE = ROOT / "nixos" / "module.nix"
NIX_FILES = sorted([*(ROOT / "nixos").rglob("*.nix"), *HERE.glob("*.nix")])

REBUILD_UNITS = ["steward-rebuild.service", "steward-upgrade.service"]
SECRETS = {
    "telegramTokenFile": ("telegram-token", "STEWARD_TELEGRAM_TOKEN_FILE"),
    "matrixPasswordFile": ("matrix-password", "STEWARD_MATRIX_PASSWORD_FILE"),
    "matrixAccessTokenFile": ("matrix-access-token", "STEWARD_MATRIX_ACCESS_TOKEN_FILE"),
    "hcloudTokenFile": ("hcloud-token", "STEWARD_HCLOUD_TOKEN_FILE"),
    "digitaloceanTokenFile": ("digitalocean-token", "STEWARD_DIGITALOCEAN_TOKEN_FILE"),
    "scalewayAccessKeyFile": ("scaleway-access-key", "STEWARD_SCALEWAY_ACCESS_KEY_FILE"),
    "scalewaySecretKeyFile": ("scaleway-secret-key", "STEWARD_SCALEWAY_SECRET_KEY_FILE"),
    "ovhApplicationKeyFile": ("ovh-application-key", "STEWARD_OVH_APPLICATION_KEY_FILE"),
    "ovhApplicationSecretFile": ("ovh-application-secret", "STEWARD_OVH_APPLICATION_SECRET_FILE"),
    "ovhConsumerKeyFile": ("ovh-consumer-key", "STEWARD_OVH_CONSUMER_KEY_FILE"),
    "cloudflareTokenFile": ("cloudflare-token", "STEWARD_CLOUDFLARE_TOKEN_FILE"),
    "rfc2136TsigFile": ("tsig-key", "STEWARD_RFC2136_TSIG_FILE"),
    "b2KeyIdFile": ("b2-key-id", "STEWARD_B2_KEY_ID_FILE"),
    "b2KeyFile": ("b2-key", "STEWARD_B2_KEY_FILE"),
    "resticPasswordFile": ("restic-password", "STEWARD_RESTIC_PASSWORD_FILE"),
}
CATALOGUE = """{
  nextcloud = {
    name = "Nextcloud";
    units = [ "phpfpm-nextcloud.service" ];
    sharedUnits = [ "nginx.service" ];
    alreadyRunning = true;
    folders = [ "/var/lib/nextcloud" ];
    movable = true;
  };
  vaultwarden.units = [ "vaultwarden.service" ];
}"""


@pytest.fixture(scope="module")
def nix_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    try:
        return nixos_eval.nix_env(tmp_path_factory.mktemp("nix"))
    except nixos_eval.NixMissingError as exc:
        pytest.fail(str(exc))


nix = nixos_eval.nix
evaluate = nixos_eval.evaluate


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Real files: a path literal naming an existing file is what Nix would copy into the store.
    folder = tmp_path_factory.mktemp("secrets")
    for credential, _ in SECRETS.values():
        (folder / credential).write_text("hunter2\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def system(nix_env: dict[str, str], secrets_dir: Path) -> dict[str, Any]:
    secrets = " ".join(f"{option} = {secrets_dir / name};" for option, (name, _) in SECRETS.items())
    return evaluate(
        nix_env,
        f"""{{
          enable = true;
          settings = {{
            admins = [ "123" "@me:example.org" ];
            matrix_homeserver = "https://matrix.example.org";
            matrix_e2ee = false;
            telegram_rate_limit = true;
            confirm_ttl_seconds = 300;
            domain = null;
          }};
          {secrets}
          services = {CATALOGUE};
        }}""",
    )


def unit(system: dict[str, Any], name: str = "steward") -> dict[str, Any]:
    found: dict[str, Any] = system["systemd"]["services"][name]
    return found


def failed_assertions(system: dict[str, Any]) -> list[str]:
    return [a["message"] for a in system["assertions"] if not a["assertion"]]


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_nix_file_parses(nix_env: dict[str, str], path: Path) -> None:
    done = nix(nix_env, "--parse", str(path))
    assert done.returncode == 0, done.stderr


def test_the_bots_unit_is_fully_hardened(system: dict[str, Any]) -> None:
    config = unit(system)["serviceConfig"]
    expected = {
        "User": "steward",
        "Group": "steward",
        "NoNewPrivileges": True,
        "ProtectSystem": "strict",
        "ProtectHome": True,
        "PrivateTmp": True,
        "PrivateDevices": True,
        "ProtectKernelTunables": True,
        "ProtectKernelModules": True,
        "ProtectKernelLogs": True,
        "ProtectControlGroups": True,
        "ProtectClock": True,
        "ProtectHostname": True,
        "RestrictAddressFamilies": ["AF_UNIX", "AF_INET", "AF_INET6"],
        "RestrictNamespaces": True,
        "RestrictRealtime": True,
        "RestrictSUIDSGID": True,
        "LockPersonality": True,
        "MemoryDenyWriteExecute": True,
        "SystemCallArchitectures": "native",
        "SystemCallFilter": ["@system-service", "~@privileged", "~@resources"],
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0027",
        "StateDirectory": "steward",
        "StateDirectoryMode": "0700",
        # The state folder only: the bot may not write the configuration, not even the folder
        # the admitted desired state lives in (root writes it, steward admit).
        "ReadWritePaths": ["/var/lib/steward"],
        "Restart": "on-failure",
    }
    assert {key: config.get(key) for key in expected} == expected
    assert re.fullmatch(
        r"/nix/store/[a-z0-9]{32}-steward-[0-9.]+/bin/steward run", config["ExecStart"]
    )
    # The schema is migrated before the bot starts, by the same package, as the same user.
    assert config["ExecStartPre"] == config["ExecStart"].replace(" run", " db upgrade")


def test_secrets_reach_the_bot_as_credentials_never_through_the_store(
    system: dict[str, Any], secrets_dir: Path
) -> None:
    service = unit(system)
    assert sorted(service["serviceConfig"]["LoadCredential"]) == sorted(
        f"{name}:{secrets_dir / name}" for name, _ in SECRETS.values()
    )
    for name, variable in SECRETS.values():
        assert service["environment"][variable] == f"%d/{name}"
    everything = json.dumps(system)
    assert "hunter2" not in everything
    for name, _ in SECRETS.values():
        assert not re.search(rf"/nix/store/[a-z0-9]{{32}}-{re.escape(name)}\b", everything)


def test_the_module_never_reads_a_file_at_evaluation() -> None:
    text = MODULE.read_text(encoding="utf-8")
    assert "readFile" not in text
    assert "importJSON" not in text


def test_unset_secrets_load_no_credential(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, "{ enable = true; matrixPasswordFile = /run/keys/missing; }")
    service = unit(system)
    assert service["serviceConfig"]["LoadCredential"] == ["matrix-password:/run/keys/missing"]
    assert [key for key in service["environment"] if key.endswith("_FILE")] == [
        "STEWARD_MATRIX_PASSWORD_FILE"
    ]


def test_settings_become_steward_environment_variables(system: dict[str, Any]) -> None:
    environment = unit(system)["environment"]
    settings = {key: value for key, value in environment.items() if not key.endswith("_FILE")}
    assert settings == {
        "STEWARD_ADMINS": "123,@me:example.org",
        "STEWARD_MATRIX_HOMESERVER": "https://matrix.example.org",
        "STEWARD_MATRIX_E2EE": "0",
        "STEWARD_TELEGRAM_RATE_LIMIT": "1",
        "STEWARD_CONFIRM_TTL_SECONDS": "300",
        "STEWARD_STATE_DIR": "/var/lib/steward",
        "STEWARD_CATALOGUE": "/etc/steward/catalogue.json",
        "STEWARD_DESIRED_STATE": "/var/lib/steward/desired-state.json",
        "STEWARD_ROOT_KEYS_FROM_CHAT": "0",
        "STEWARD_BACKUP_UNITS": "1",
        "STEWARD_WORKER_DIR": "/var/lib/steward-worker",
    }


def test_the_name_and_the_watch_reach_the_bots_environment(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, '{ enable = true; name = "vps"; watch = "home-box"; }')

    environment = unit(system)["environment"]
    assert environment["STEWARD_NAME"] == "vps"
    assert environment["STEWARD_WATCH"] == "home-box"
    assert failed_assertions(system) == []
    plain = unit(evaluate(nix_env, "{ enable = true; }"))["environment"]
    assert "STEWARD_NAME" not in plain
    assert "STEWARD_WATCH" not in plain


@pytest.mark.parametrize(
    ("steward", "error"),
    [
        ('{ enable = true; name = "My VPS"; }', "services.steward.name: not a nullOr"),
        ('{ enable = true; watch = [ "a" "b" ]; }', "services.steward.watch: not a nullOr"),
    ],
)
def test_a_name_that_steward_would_refuse_fails_the_evaluation(
    nix_env: dict[str, str], steward: str, error: str
) -> None:
    done = nix(nix_env, "--eval", "--strict", "--json", str(HERE / "eval.nix"),
               "--arg", "steward", steward)  # fmt: skip
    assert done.returncode != 0
    assert error in done.stderr


@pytest.mark.parametrize(
    ("steward", "refusal"),
    [
        ('{ enable = true; name = "vps"; watch = "vps"; }', "is this Steward's own name"),
        ('{ enable = true; settings.name = "vps"; }', "are set by the module"),
    ],
)
def test_a_watch_of_itself_or_a_name_in_settings_is_refused(
    nix_env: dict[str, str], steward: str, refusal: str
) -> None:
    assert any(refusal in message for message in failed_assertions(evaluate(nix_env, steward)))


def test_the_default_configuration_passes_its_assertions(system: dict[str, Any]) -> None:
    assert failed_assertions(system) == []


def test_a_secret_in_settings_is_refused(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, '{ enable = true; settings.telegram_token = "123:abc"; }')
    assert any("must not hold secrets" in message for message in failed_assertions(system))


def test_a_secret_file_in_the_store_is_refused(nix_env: dict[str, str]) -> None:
    system = evaluate(
        nix_env,
        '{ enable = true; b2KeyFile = "/nix/store/00000000000000000000000000000000-key"; }',
    )
    assert any("in the Nix store" in message for message in failed_assertions(system))


def test_a_bad_service_id_is_refused(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, '{ enable = true; services."Bad Id".units = [ "x.service" ]; }')
    assert any("ids must match" in message for message in failed_assertions(system))


def test_the_catalogue_is_written_as_the_bot_reads_it(system: dict[str, Any]) -> None:
    text = system["environment"]["etc"]["steward/catalogue.json"]["text"]
    catalogue = ServiceCatalogue.from_json(json.loads(text))
    assert list(catalogue) == ["nextcloud", "vaultwarden"]
    assert catalogue["nextcloud"].name == "Nextcloud"
    assert catalogue["nextcloud"].units == ("phpfpm-nextcloud.service",)
    assert catalogue["nextcloud"].shared_units == ("nginx.service",)
    assert catalogue["nextcloud"].already_running
    assert catalogue["nextcloud"].movable
    assert catalogue["vaultwarden"].name == "vaultwarden"
    assert not catalogue["vaultwarden"].already_running
    assert catalogue.all_units == (
        "phpfpm-nextcloud.service",
        "nginx.service",
        "vaultwarden.service",
    )


def _js_array(rule: str, name: str) -> list[str]:
    match = re.search(rf"var {name} = (\[.*?\]);", rule)
    assert match, f"{name} is not in the polkit rule"
    values: list[str] = json.loads(match.group(1))
    return values


def test_polkit_lets_the_bot_start_exactly_its_units(system: dict[str, Any]) -> None:
    polkit = system["security"]["polkit"]
    rule = polkit["extraConfig"]
    assert polkit["enable"] is True
    assert 'action.id != "org.freedesktop.systemd1.manage-units"' in rule
    assert 'subject.user != "steward"' in rule
    assert 'action.lookup("unit")' in rule
    assert 'action.lookup("verb")' in rule
    assert _js_array(rule, "rebuildUnits") == REBUILD_UNITS
    rollback = re.search(r"var rollbackUnit = new RegExp\((\".*?\")\);", rule)
    assert rollback, "the rollback template is not in the polkit rule"
    pattern = json.loads(rollback.group(1))
    assert re.fullmatch(pattern.strip("^$"), "steward-rollback@42.service")
    for bad in ("steward-rollback@42.service.d", "steward-rollback@4x.service", "sshd.service"):
        assert not re.search(pattern, bad), bad
    # /reboot goes through logind; nothing else of logind is granted.
    assert rule.count("org.freedesktop.login1.") == 2
    # Their own units only: nginx is shared, and not the bot's to stop.
    assert _js_array(rule, "serviceUnits") == [
        "phpfpm-nextcloud.service",
        "vaultwarden.service",
    ]
    assert (
        "(rebuildUnits.indexOf(unit) >= 0 || rollbackUnit.test(unit) || growfsUnit.test(unit) ||"
        '\n       dataUnit.test(unit) || selfUnit.test(unit)) && verb == "start"' in rule
    )
    assert (
        'serviceUnits.indexOf(unit) >= 0 && ["start","stop","restart"].indexOf(verb) >= 0' in rule
    )
    assert rule.count("polkit.Result.YES") == 3


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("steward-rebuild", "nixos-rebuild switch"),
        ("steward-upgrade", "nixos-rebuild switch --upgrade"),
    ],
)
def test_rebuild_units_are_root_oneshots_a_switch_leaves_alone(
    system: dict[str, Any], name: str, command: str
) -> None:
    service = unit(system, name)
    assert service["restartIfChanged"] is False
    assert service["stopIfChanged"] is False
    assert service["serviceConfig"] == {
        "Type": "oneshot",
        "StateDirectory": "steward-rebuild",  # root's: the ledger of root-key codes
        "StateDirectoryMode": "0700",
    }
    admit, switch = service["script"].strip().splitlines()
    assert switch.strip() == command
    # Root checks the bot's file first; without allowRootKeysFromChat no TOTP secret is passed.
    assert re.sub(r"/nix/store/[a-z0-9]{32}-[^/]*", "STORE", admit.strip()) == (
        "STORE/bin/steward admit --source '/var/lib/steward/desired-state.json' "
        "--state-dir /var/lib/steward-rebuild "
        "--admitted '/etc/nixos/steward/desired-state.json' "
        "--catalogue /etc/steward/catalogue.json"
    )
    assert "wantedBy" not in service
    packages = [re.sub(r"^/nix/store/[a-z0-9]{32}-", "", path) for path in service["path"]]
    assert {"nixos-rebuild", "nix", "git"} <= set(packages)


def test_a_flake_upgrade_updates_the_lock_then_switches_to_the_flake(
    nix_env: dict[str, str],
) -> None:
    system = evaluate(
        nix_env,
        '{ enable = true; upgrade = { method = "flake"; flake = "/etc/nixos"; }; }',
    )
    upgrade = unit(system, "steward-upgrade")["script"].strip().splitlines()
    admit = upgrade.pop(0)
    # Root admits the proposal into the configuration, and adds it to git itself.
    assert "/bin/steward admit " in admit
    assert "--source '/var/lib/steward/desired-state.json'" in admit
    assert "--admitted '/etc/nixos/steward/desired-state.json'" in admit
    assert "--flake '/etc/nixos'" in admit
    # No --impure: the admitted copy is a file of the flake, as a plain rebuild reads it.
    assert [line.strip() for line in upgrade] == [
        "cd '/etc/nixos'",
        "nix --extra-experimental-features 'nix-command flakes' flake update",
        "nixos-rebuild switch --flake '/etc/nixos'",
    ]
    rebuild = unit(system, "steward-rebuild")["script"].strip().splitlines()
    assert [line.strip() for line in rebuild] == [
        admit,
        "nixos-rebuild switch --flake '/etc/nixos'",
    ]
    assert unit(system)["environment"]["STEWARD_UPGRADE_FLAKE"] == "/etc/nixos"


def test_the_rollback_template_switches_to_the_generation_it_is_given(
    system: dict[str, Any], tmp_path: Path
) -> None:
    service = unit(system, "steward-rollback@")
    assert service["restartIfChanged"] is False
    assert service["scriptArgs"] == "%i"
    assert "%i" in service["description"]
    script = service["script"]
    assert 'nix-env --profile "$profile" --switch-generation "$generation"' in script
    assert '"$profile/bin/switch-to-configuration" switch' in script
    # The script refuses anything but a number before it touches the profile.
    body = tmp_path / "rollback.sh"
    body.write_text(script.replace("nix-env", "echo nix-env"), encoding="utf-8")
    for bad in ("", "4; reboot", "../1"):
        done = subprocess.run(
            ["sh", str(body), bad], capture_output=True, text=True, timeout=10, check=False
        )
        assert done.returncode == 2, bad
        assert "not a generation number" in done.stderr
    missing = subprocess.run(
        ["sh", str(body), "987654"], capture_output=True, text=True, timeout=10, check=False
    )
    assert missing.returncode == 1
    assert "generation 987654 does not exist" in missing.stderr


def test_the_bot_has_a_static_system_user_that_reads_the_journal(system: dict[str, Any]) -> None:
    user = system["users"]["users"]["steward"]
    assert user["isSystemUser"] is True
    assert user["group"] == "steward"
    assert user["extraGroups"] == ["systemd-journal"]
    assert "steward" in system["users"]["groups"]


def test_a_disabled_module_configures_nothing(nix_env: dict[str, str]) -> None:
    assert evaluate(nix_env, "{ }") == {}


def test_a_state_dir_elsewhere_is_created_by_tmpfiles(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, '{ enable = true; stateDir = "/srv/steward"; }')
    config = unit(system)["serviceConfig"]
    assert "StateDirectory" not in config
    assert config["ReadWritePaths"] == ["/srv/steward"]
    assert system["systemd"]["tmpfiles"]["rules"] == [
        "d /srv/steward 0700 steward steward - -",
        # Root's: the admitted copy, which the bot may not write.
        "d /etc/nixos/steward 0755 root root - -",
    ]
    # The bot's proposal stays in its own folder; root admits it into /etc/nixos/steward.
    assert unit(system)["environment"]["STEWARD_DESIRED_STATE"] == "/srv/steward/desired-state.json"
    assert (
        "--admitted '/etc/nixos/steward/desired-state.json'"
        in unit(system, "steward-rebuild")["script"]
    )


def test_an_unknown_option_is_an_evaluation_error(nix_env: dict[str, str]) -> None:
    done = nix(
        nix_env,
        "--eval",
        "--strict",
        "--json",
        str(HERE / "eval.nix"),
        "--arg",
        "steward",
        "{ enable = true; telegramToken = 1; }",
    )
    assert done.returncode != 0
    assert "unknown option(s) telegramToken" in done.stderr


def _ini_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_unit(service: dict[str, Any], exec_start: str) -> str:
    """Render as NixOS does: one line per list item, quoted Environment=, PATH from `path`."""
    lines = ["[Unit]", f"Description={service['description']}"]
    lines += [f"After={target}" for target in service.get("after", [])]
    lines += [f"Wants={target}" for target in service.get("wants", [])]
    lines += ["", "[Service]"]
    environment = {
        **service.get("environment", {}),
        "PATH": ":".join(f"{path}/bin" for path in service["path"]),
    }
    lines += [f'Environment="{key}={value}"' for key, value in sorted(environment.items())]
    # Every Exec* command is the package's, which is not in this machine's store.
    config = {
        key: exec_start if key.startswith("Exec") else value
        for key, value in service["serviceConfig"].items()
    }
    for key, setting in {**config, "ExecStart": exec_start}.items():
        items = setting if isinstance(setting, list) else [setting]
        lines += [f"{key}={_ini_value(item)}" for item in items]
    lines += ["", "[Install]"]
    lines += [f"WantedBy={target}" for target in service.get("wantedBy", [])]
    return "\n".join(lines) + "\n"


def test_the_rendered_unit_passes_systemd_analyze_verify(
    system: dict[str, Any], tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    # The store path of the package does not exist here; every other complaint fails the test.
    path = tmp_path / "steward.service"
    path.write_text(render_unit(unit(system), "/bin/true"), encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert done.stdout.strip() == ""


def test_polkit_lets_the_bot_grow_only_cloud_volume_filesystems(system: dict[str, Any]) -> None:
    rule = system["security"]["polkit"]["extraConfig"]
    found = re.search(r"var growfsUnit = new RegExp\((\".*?\")\);", rule)
    assert found, "the growfs template is not in the polkit rule"
    pattern = json.loads(found.group(1))
    name = f"steward-growfs@{systemd_escape_path('/dev/disk/by-id/scsi-0HC_Volume_1234')}.service"
    assert re.search(pattern, name)
    for bad in ("/dev/sda", "/dev/disk/by-id/scsi-0HC_Volume_1/../../sda", "/dev/mapper/root"):
        assert not re.search(pattern, f"steward-growfs@{systemd_escape_path(bad)}.service"), bad
    assert "growfsUnit.test(unit)" in rule


def test_the_growfs_unit_refuses_anything_but_a_cloud_volume(
    system: dict[str, Any], tmp_path: Path
) -> None:
    service = unit(system, "steward-growfs@")
    assert service["scriptArgs"] == "%f"  # %I drops the leading "/"
    assert service["serviceConfig"] == {"Type": "oneshot"}
    body = tmp_path / "growfs.sh"
    body.write_text(service["script"], encoding="utf-8")
    for bad in ("/dev/sda", "", "/etc/passwd"):
        done = subprocess.run(
            ["sh", str(body), bad], capture_output=True, text=True, timeout=10, check=False
        )
        assert done.returncode == 2, bad
        assert "not a cloud volume" in done.stderr


def test_the_bot_reads_certificates_only_when_given_their_group(nix_env: dict[str, str]) -> None:
    plain = evaluate(nix_env, "{ enable = true; }")
    assert plain["users"]["users"]["steward"]["extraGroups"] == ["systemd-journal"]
    given = evaluate(nix_env, '{ enable = true; certificateGroup = "acme"; }')
    assert given["users"]["users"]["steward"]["extraGroups"] == ["systemd-journal", "acme"]


def _names(deps: list[str]) -> set[str]:
    """PyPI names of requirements, without extras or versions; Steward's own extras expanded by
    the caller."""
    return {re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower() for dep in deps}


NIXPKGS_NAMES = {"matrix-nio": "matrix-nio", "psycopg": "psycopg"}


def test_the_package_brings_every_runtime_dependency_and_extra_of_pyproject() -> None:
    """package.nix lists nixpkgs' Python packages by hand; one missing is a bot that fails to
    import on the server, which no other test would notice. Core and each extra separately."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "nixos" / "package.nix").read_text()
    core_block = text[text.index("dependencies =") :]
    listed_core = set(re.findall(r"^\s+([a-z0-9-]+)\s*(?:#.*)?$", core_block, re.M))
    assert _names(project["dependencies"]) - listed_core == set()
    optional = project["optional-dependencies"]
    mapped = dict(re.findall(r"^\s+([a-z0-9]+) = \[ ([a-z0-9-]+) \]", text, re.M))
    assert "matrix-e2ee = [ matrix-nio ] ++ matrix-nio.optional-dependencies.e2e;" in text
    assert optional["matrix-e2ee"] == ["matrix-nio[e2e]>=0.26,<0.27"]
    mapped["matrix-e2ee"] = "matrix-nio"
    for extra in ("matrix", "hetzner", "digitalocean", "scaleway", "ovh", "cloudflare", "b2",
                  "postgres"):  # fmt: skip
        (wanted,) = _names(optional[extra])
        assert mapped.get(extra) == wanted, extra
    assert _names(optional["all"]) == {"steward"}
    assert set(optional["all"][0].split("[")[1].rstrip("]").split(",")) == set(mapped)


def test_the_package_is_built_from_every_package_of_the_wheel() -> None:
    """The wheel's packages are named in pyproject.toml; package.nix names them again, in the
    source it copies and in the import check. A package missing from the copy is a bot that
    fails to import on the server, and only there."""
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    packages = set(wheel["targets"]["wheel"]["packages"])
    text = (ROOT / "nixos" / "package.nix").read_text()
    fileset = text[text.index("fileset.unions [") :]
    fileset = fileset[: fileset.index("];")]
    copied = set(re.findall(r"^\s+\.\./([a-z_]+)$", fileset, re.M))
    checks = text[text.index("pythonImportsCheck = [") :]
    checked = {
        name.split(".")[0] for name in re.findall(r'"([a-z_.]+)"', checks[: checks.index("];")])
    }
    assert packages == copied == checked


@pytest.mark.parametrize(
    ("settings", "extra_secrets", "extras"),
    [
        ('{ telegram_rate_limit = true; }', "", []),
        ('{ matrix_homeserver = "https://m.example.org"; server_provider = "hetzner"; }', "",
         ["matrix", "hetzner"]),
        ('{ matrix_homeserver = "https://m.example.org"; matrix_e2ee = true; }', "",
         ["matrix", "matrix-e2ee"]),
        ('{ server_provider = "none"; dns_provider = "cloudflare"; }', "", ["cloudflare"]),
        ('{ server_provider = "ovh"; database_url = "postgresql://steward@/steward"; }', "",
         ["ovh", "postgres"]),
        ("{ }", "b2KeyIdFile = /dev/null;", ["b2"]),
    ],
    ids=["telegram-only", "matrix-hetzner", "matrix-e2ee", "home-cloudflare", "ovh-postgres",
         "b2"],
)  # fmt: skip
def test_the_package_carries_only_the_extras_the_settings_need(
    nix_env: dict[str, str], settings: str, extra_secrets: str, extras: list[str]
) -> None:
    steward = f"{{ enable = true; settings = {settings}; {extra_secrets} services = {{ }}; }}"
    done = nix(nix_env, "--eval", "--strict", "--json", str(HERE / "eval.nix"),
               "--arg", "steward", steward, "--arg", "extras", "true")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == extras


def test_backups_and_restores_run_as_root_units_the_bot_may_only_start(
    system: dict[str, Any], tmp_path: Path
) -> None:
    services = system["systemd"]["services"]
    bot = unit(system)
    for kind, template in (("backup", "backup"), ("restore", "restore"),
                           ("restore --foreign", "restore-foreign")):  # fmt: skip
        job = services[f"steward-{template}@"]
        config = job["serviceConfig"]
        assert config["ExecStart"].endswith(f"/bin/steward worker {kind} %i")
        assert config["PrivateDevices"] is True  # a device node in a snapshot stays a file
        assert config["Type"] == "oneshot"
        assert "User" not in config  # root: it reads and writes the services' data
        assert config["LoadCredential"] == bot["serviceConfig"]["LoadCredential"]
        own = {"STEWARD_ROOT_KEYS_FROM_CHAT"}
        shared = {k: v for k, v in bot["environment"].items() if k not in own}
        assert job["environment"] == shared
        assert job["environment"]["STEWARD_DESIRED_STATE"] == "/var/lib/steward/desired-state.json"
        assert any(path.endswith("-restic") for path in job["path"])
        assert job["restartIfChanged"] is False
        assert config["StateDirectory"] == "steward-worker"  # never the bot's state folder
        assert job["environment"]["STEWARD_WORKER_DIR"] == "/var/lib/steward-worker"
        analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
        rendered = tmp_path / f"steward-{template}@.service"
        rendered.write_text(render_unit(job, f"/bin/true {kind} %i"), encoding="utf-8")
        done = subprocess.run([analyze, "verify", "--man=no", str(rendered)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert any(path.endswith("-restic") for path in bot["path"])
    rule = system["security"]["polkit"]["extraConfig"]
    found = re.search(r"var dataUnit = new RegExp\((\".*?\")\);", rule)
    assert found, "the data units are not in the polkit rule"
    # fullmatch: JavaScript's ^…$ without the m flag; Python's $ would pass a final newline.
    pattern = json.loads(found.group(1)).removeprefix("^").removesuffix("$")
    allowed = [
        "steward-backup@nextcloud:manual.service",
        f"steward-restore@nextcloud:{'a' * 64}.service",
        "steward-restore@nextcloud:recover.service",
    ]
    for name in allowed:
        assert re.fullmatch(pattern, name), name
    refused = [
        "steward-backup@nextcloud:manual\n.service",
        "steward-backup@nextcloud:manual.service\n",
        "steward-restore@nextcloud:--foo.service",
        "steward-restore@nextcloud:-h.service",
        "steward-backup@nextcloud:recover.service",
        "steward-restore@nextcloud:manual.service",
        "steward-restore@nextcloud:abc.service",  # too short for a snapshot id
        f"steward-restore-foreign@nextcloud:{'a' * 64}.service",  # for root's shell only
        "steward-backup@vaultwarden:manual.service",  # no folders in the catalogue
        "steward-backup@nextcloud:manual.service.d",
        "steward-backup@nextcloud.service",
        "steward-backup@nextcloudx:manual.service",
        "steward-restore@nextcloud:../etc.service",
        "steward-growfs@nextcloud:manual.service",
    ]
    for name in refused:
        assert not re.fullmatch(pattern, name), name


def test_postgresql_dumps_map_root_to_postgres_only_when_asked(
    nix_env: dict[str, str], system: dict[str, Any]
) -> None:
    assert "postgresql" not in system.get("services", {})
    assert "STEWARD_POSTGRES_HOST" not in unit(system)["environment"]
    with_dumps = evaluate(
        nix_env,
        """{ enable = true; postgresql.enable = true;
             services.nextcloud = { units = [ "phpfpm-nextcloud.service" ];
               folders = [ "/var/lib/nextcloud" ]; databases = [ "nextcloud" ]; }; }""",
    )
    postgres = with_dumps["services"]["postgresql"]
    assert postgres["identMap"].splitlines() == [
        "steward-dumps root postgres",
        "steward-dumps postgres postgres",
        "steward-dumps root nextcloud",  # restores log in as the service's own role
    ]
    assert postgres["authentication"].splitlines() == [
        "local all postgres peer map=steward-dumps",
        "local nextcloud nextcloud peer map=steward-dumps",
    ]
    job = with_dumps["systemd"]["services"]["steward-backup@"]
    assert job["environment"]["STEWARD_POSTGRES_HOST"] == "/run/postgresql"
    assert any(path.endswith("-postgresql") for path in job["path"])


def test_disk_health_is_recorded_by_a_narrow_root_unit_the_bot_only_reads(
    nix_env: dict[str, str], system: dict[str, Any], tmp_path: Path
) -> None:
    assert "steward-health" not in system["systemd"]["services"]
    assert "STEWARD_HEALTH_DIR" not in unit(system)["environment"]
    home = evaluate(
        nix_env,
        """{ enable = true; hardware = { enable = true; zfs = true; };
             settings = { server_provider = "none"; ups = "ups@localhost"; }; }""",
    )
    health = home["systemd"]["services"]["steward-health"]
    config = health["serviceConfig"]
    bot = unit(home)

    assert "User" not in config
    assert config["Type"] == "oneshot"
    assert sorted(config["CapabilityBoundingSet"]) == ["CAP_SYS_ADMIN", "CAP_SYS_RAWIO"]
    assert config["DevicePolicy"] == "closed"
    assert config["DeviceAllow"] == ["block-sd r", "block-blkext r", "char-nvme r", "/dev/zfs rw"]
    assert config["PrivateNetwork"] is True
    assert config["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert config["StateDirectory"] == "steward-health"
    assert config["NoNewPrivileges"] is True
    assert bot["environment"]["STEWARD_HEALTH_DIR"] == "/var/lib/steward-health"
    # The bot itself gains nothing: no capability, no device.
    assert bot["serviceConfig"]["CapabilityBoundingSet"] == ""
    assert bot["serviceConfig"]["PrivateDevices"] is True
    assert any(path.endswith("-nut") for path in bot["path"])
    assert "smartctl --json -a -n standby" in health["script"]
    assert "zpool status -x | write zpool-status.txt" in health["script"]
    timer = home["systemd"]["timers"]["steward-health"]["timerConfig"]
    assert timer["OnUnitActiveSec"] == "10min"
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    rendered = tmp_path / "steward-health.service"
    rendered.write_text(render_unit(health, "/bin/true"), encoding="utf-8")
    done = subprocess.run([analyze, "verify", "--man=no", str(rendered)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_what_the_health_unit_records_is_what_the_bot_reads(
    nix_env: dict[str, str], tmp_path: Path
) -> None:
    from providers.hardware.disks import SmartctlDisks  # noqa: PLC0415
    from tests.support.home_fakes import HomeFakes  # noqa: PLC0415

    home = evaluate(nix_env, "{ enable = true; hardware = { enable = true; zfs = true; }; }")
    script = home["systemd"]["services"]["steward-health"]["script"]
    fakes = HomeFakes(tmp_path)
    fakes.disks(sda="sata-healthy", nvme0="nvme-failing")
    out = tmp_path / "steward-health"
    out.mkdir()
    env = {"PATH": f"{fakes.path}:/usr/bin:/bin", "STATE_DIRECTORY": str(out), "LC_ALL": "C"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr

    sda, nvme = asyncio.run(SmartctlDisks(recorded=out).disks())
    assert (sda.device, sda.failing, nvme.device, nvme.failing) == (
        "/dev/sda", False, "/dev/nvme0", True)  # fmt: skip
    assert (out / "zpool-status.txt").read_text() == "no pools available\n"
    assert ["--json", "-a", "-n", "standby", "-d", "sat", "/dev/sda"] in fakes.calls("smartctl")


def test_the_repository_url_and_backend_keys_are_credentials_of_the_bot_and_the_workers(
    nix_env: dict[str, str],
) -> None:
    system = evaluate(
        nix_env,
        "{ enable = true; resticRepositoryFile = /run/keys/restic-url; "
        "resticEnvironmentFile = /run/keys/restic-env; resticPasswordFile = /run/keys/pw; }",
    )
    for name in ("steward", "steward-backup@", "steward-restore@"):
        service = unit(system, name)
        assert set(service["serviceConfig"]["LoadCredential"]) == {
            "restic-repository:/run/keys/restic-url",
            "restic-environment:/run/keys/restic-env",
            "restic-password:/run/keys/pw",
        }
        environment = service["environment"]
        assert environment["STEWARD_RESTIC_REPOSITORY_FILE"].endswith("/restic-repository")
        assert environment["STEWARD_RESTIC_ENVIRONMENT_FILE"].endswith("/restic-environment")
        assert "STEWARD_RESTIC_REPOSITORY" not in environment
        assert not any("/run/keys" in str(value) for value in environment.values())
    # sftp: repositories: restic runs ssh from the root units' PATH.
    assert any("openssh" in str(item) for item in unit(system, "steward-backup@")["path"])


def test_root_keys_from_chat_are_checked_with_a_secret_only_the_rebuild_units_load(
    nix_env: dict[str, str], secrets_dir: Path
) -> None:
    assert failed_assertions(evaluate(nix_env, "{ enable = true; allowRootKeysFromChat = true; }"))
    system = evaluate(
        nix_env,
        f"""{{ enable = true; allowRootKeysFromChat = true;
               rootKeyTotpFile = {secrets_dir / "telegram-token"}; }}""",
    )
    assert failed_assertions(system) == []
    credential = f"root-key-totp:{secrets_dir / 'telegram-token'}"
    for name in ("steward-rebuild", "steward-upgrade"):
        service = unit(system, name)
        assert service["serviceConfig"]["LoadCredential"] == [credential]
        assert '--root-key-totp "$CREDENTIALS_DIRECTORY/root-key-totp"' in service["script"]
    everyone_else = [
        s.get("serviceConfig", {}).get("LoadCredential", [])
        for n, s in system["systemd"]["services"].items()
        if n not in ("steward-rebuild", "steward-upgrade")
    ]
    assert not any("root-key-totp" in str(c) for c in everyone_else)
    assert unit(system)["environment"]["STEWARD_ROOT_KEYS_FROM_CHAT"] == "1"


def test_stewards_own_snapshot_is_a_root_unit_the_bot_may_start_for_a_reason_only(
    system: dict[str, Any],
) -> None:
    rule = system["security"]["polkit"]["extraConfig"]
    found = re.search(r"var selfUnit = new RegExp\((\".*?\")\);", rule)
    assert found, "Steward's own snapshot unit is not in the polkit rule"
    pattern = json.loads(found.group(1))
    assert 'selfUnit.test(unit)) && verb == "start"' in rule
    for reason in ("scheduled", "manual", "pre-upgrade"):
        assert re.search(pattern, f"steward-backup@steward:{reason}.service"), reason
    for name in (
        "steward-restore@steward:recover.service",
        "steward-backup@steward:x.service",
        "steward-backup@steward:manual.service.d",
        "steward-backup@stewardx:manual.service",
    ):
        assert not re.search(pattern, name), name


def test_a_service_may_not_take_stewards_own_id(nix_env: dict[str, str]) -> None:
    system = evaluate(nix_env, '{ enable = true; services.steward.units = [ "a.service" ]; }')
    assert any("Steward's own snapshot" in message for message in failed_assertions(system))


def test_sftp_known_hosts_and_key_are_credentials_of_the_bot_and_the_workers(
    nix_env: dict[str, str],
) -> None:
    system = evaluate(
        nix_env,
        "{ enable = true; resticSshKeyFile = /run/keys/ssh-key; "
        'resticKnownHostsFile = "/nix/store/abc-known-hosts"; }',
    )
    assert failed_assertions(system) == []  # a known-hosts file is no secret: the store will do
    for name in ("steward", "steward-backup@", "steward-restore@"):
        service = unit(system, name)
        assert set(service["serviceConfig"]["LoadCredential"]) == {
            "restic-ssh-key:/run/keys/ssh-key",
            "restic-known-hosts:/nix/store/abc-known-hosts",
        }
        environment = service["environment"]
        assert environment["STEWARD_RESTIC_SSH_KEY_FILE"].endswith("/restic-ssh-key")
        assert environment["STEWARD_RESTIC_KNOWN_HOSTS_FILE"].endswith("/restic-known-hosts")
        assert any("openssh" in str(item) for item in service["path"])
    in_store = evaluate(nix_env, '{ enable = true; resticSshKeyFile = "/nix/store/abc-key"; }')
    assert any("in the Nix store" in message for message in failed_assertions(in_store))


def test_a_shared_unit_listed_as_a_services_own_fails_the_build_and_is_never_granted(
    nix_env: dict[str, str],
) -> None:
    system = evaluate(
        nix_env,
        """{ enable = true; services = {
      nextcloud.units = [ "phpfpm-nextcloud.service" "nginx.service" ];
      forgejo = { units = [ "forgejo.service" "redis-forgejo.service" ];
                  sharedUnits = [ "postgresql.service" ]; };
      wiki.units = [ "wiki.service" "redis-forgejo.service" ];
    }; }""",
    )
    assert any("list it in its sharedUnits" in message for message in failed_assertions(system))
    rule = system["security"]["polkit"]["extraConfig"]
    granted = _js_array(rule, "serviceUnits")
    assert "nginx.service" not in granted
    assert "postgresql.service" not in granted
    assert "phpfpm-nextcloud.service" in granted


def test_a_unit_two_services_list_as_shared_is_shown_but_never_granted(
    nix_env: dict[str, str],
) -> None:
    system = evaluate(
        nix_env,
        """{ enable = true; services = {
      nextcloud = { units = [ "phpfpm-nextcloud.service" ]; sharedUnits = [ "redis.service" ]; };
      forgejo = { units = [ "forgejo.service" ]; sharedUnits = [ "redis.service" ]; };
    }; }""",
    )
    assert failed_assertions(system) == []
    assert _js_array(system["security"]["polkit"]["extraConfig"], "serviceUnits") == [
        "forgejo.service", "phpfpm-nextcloud.service"]  # fmt: skip
    text = system["environment"]["etc"]["steward/catalogue.json"]["text"]
    catalogue = ServiceCatalogue.from_json(json.loads(text))
    assert catalogue.all_units == ("forgejo.service", "redis.service", "phpfpm-nextcloud.service")


def test_a_bot_on_this_servers_postgresql_lets_root_log_in_as_its_role(
    nix_env: dict[str, str],
) -> None:
    """Steward's own snapshot and `steward recover` run as root and dump or load the bot's
    database as the bot's role; over TCP (a host name) nothing is mapped."""
    for url in (
        "postgresql:///steward",
        "postgresql+psycopg://steward@/steward?host=/run/postgresql",
    ):
        local = evaluate(nix_env, f'{{ enable = true; settings.database_url = "{url}"; }}')
        postgres = local["services"]["postgresql"]
        assert postgres["identMap"].splitlines() == [
            "steward-bot root steward",
            "steward-bot steward steward",  # the bot itself still logs in
        ], url
        assert postgres["authentication"].splitlines() == ["local all steward peer map=steward-bot"]
    remote = evaluate(
        nix_env, '{ enable = true; settings.database_url = "postgresql://steward@db.lan/steward"; }'
    )
    assert "postgresql" not in remote.get("services", {})
    both = evaluate(
        nix_env,
        """{ enable = true; postgresql.enable = true;
             settings.database_url = "postgresql:///steward"; }""",
    )
    assert both["services"]["postgresql"]["authentication"].splitlines() == [
        "local all steward peer map=steward-bot",
        "local all postgres peer map=steward-dumps",
    ]

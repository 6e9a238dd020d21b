"""Every option path nixos/module.nix sets exists under that name in current NixOS.

The module is evaluated with a stub lib (no nixpkgs here: neither Debian nor PyPI carries its
lib), which merges nothing and so cannot notice a misspelt NixOS option: `users.users.x.extraGroup`
would evaluate fine and be ignored by nobody but the real module system. This walks everything
the module sets, with every feature on, against the NixOS option names below, each with the
nixpkgs file that declares it (nixos-unstable, checked 2026-12). `<name>` is an attribute name
of the user's choosing. `serviceConfig` and `unitConfig` are free-form in NixOS: their keys are
systemd directives, checked against systemd 252's names (systemd.exec(5), systemd.service(5),
systemd.unit(5)) and, in tests/systemd, by the real systemd itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import nixos_eval

UNIT_OPTIONS = "nixos/lib/systemd-unit-options.nix"
NIXOS_OPTIONS: dict[str, str] = {
    "assertions": "nixos/modules/misc/assertions.nix",
    "users.users.<name>.isSystemUser": "nixos/modules/config/users-groups.nix",
    "users.users.<name>.group": "nixos/modules/config/users-groups.nix",
    "users.users.<name>.extraGroups": "nixos/modules/config/users-groups.nix",
    "users.users.<name>.home": "nixos/modules/config/users-groups.nix",
    "users.users.<name>.description": "nixos/modules/config/users-groups.nix",
    "users.groups.<name>": "nixos/modules/config/users-groups.nix",
    "environment.etc.<name>.text": "nixos/modules/system/etc/etc.nix",
    "environment.systemPackages": "nixos/modules/config/system-path.nix",
    "security.polkit.enable": "nixos/modules/security/polkit.nix",
    "security.polkit.extraConfig": "nixos/modules/security/polkit.nix",
    "systemd.tmpfiles.rules": "nixos/modules/system/boot/systemd/tmpfiles.nix",
    "services.postgresql.identMap": "nixos/modules/services/databases/postgresql.nix",
    "services.postgresql.authentication": "nixos/modules/services/databases/postgresql.nix",
    **{f"systemd.services.<name>.{option}": UNIT_OPTIONS for option in (
        "description", "wantedBy", "wants", "after", "path", "environment", "script",
        "scriptArgs", "restartIfChanged", "stopIfChanged", "serviceConfig", "unitConfig")},
    **{f"systemd.timers.<name>.{option}": UNIT_OPTIONS for option in (
        "wantedBy", "timerConfig")},
}  # fmt: skip
SYSTEMD_DIRECTIVES = {
    "systemd.services.<name>.serviceConfig": {
        # systemd.service(5)
        "Type", "ExecStart", "ExecStartPre", "Restart", "RestartSec",
        # systemd.exec(5)
        "User", "Group", "WorkingDirectory", "UMask", "LoadCredential", "StateDirectory",
        "StateDirectoryMode", "CacheDirectory", "ReadWritePaths", "ProtectSystem", "ProtectHome",
        "PrivateTmp", "PrivateDevices", "PrivateNetwork", "NoNewPrivileges",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictRealtime",
        "RestrictSUIDSGID", "LockPersonality", "RestrictAddressFamilies", "RestrictNamespaces",
        "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
        "CapabilityBoundingSet", "AmbientCapabilities",
        # systemd.resource-control(5)
        "DevicePolicy", "DeviceAllow",
    },
    # systemd.unit(5): systemd ignores X- keys; NixOS's switch-to-configuration reads this.
    "systemd.services.<name>.unitConfig": {"X-StopOnRemoval"},
    # systemd.timer(5)
    "systemd.timers.<name>.timerConfig": {"OnBootSec", "OnUnitActiveSec"},
}  # fmt: skip
EVERYTHING_ON = """{
  enable = true;
  stateDir = "/srv/steward";
  certificateGroup = "acme";
  postgresql.enable = true;
  hardware = { enable = true; zfs = true; };
  upgrade = { method = "flake"; flake = "/etc/nixos"; };
  settings = { ups = "ups@localhost"; server_provider = "none"; };
  resticPasswordFile = "/run/keys/restic";
  services.app = { units = [ "app.service" ]; folders = [ "/srv/app" ]; databases = [ "app" ]; };
}"""
# Options whose next attribute is a name of the user's choosing.
NAMED = {("users", "users"), ("users", "groups"), ("environment", "etc"),
         ("systemd", "services"), ("systemd", "timers")}  # fmt: skip


def _generic(path: tuple[str, ...]) -> str:
    """(systemd, services, steward-backup@, serviceConfig) -> ``systemd.services.<name>.…``:
    a tuple, since a name may hold dots ("steward/catalogue.json")."""
    if path[:2] in NAMED and len(path) > 2:
        path = (*path[:2], "<name>", *path[3:])
    return ".".join(path)


def set_paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The option paths under ``value``: down to a known option, or to a leaf."""
    if _generic(path) in NIXOS_OPTIONS or not isinstance(value, dict) or not value:
        return [path]
    return [p for key, inner in value.items() for p in set_paths(inner, (*path, key))]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return nixos_eval.evaluate(nixos_eval.nix_env(tmp_path_factory.mktemp("nix")), EVERYTHING_ON)


def test_every_option_the_module_sets_is_a_nixos_option(system: dict[str, Any]) -> None:
    paths = {_generic(p) for p in set_paths(system)}
    assert paths - set(NIXOS_OPTIONS) == set()
    # The walk reaches what matters: the list is not passing by being too wide.
    assert {"security.polkit.extraConfig", "users.users.<name>.extraGroups",
            "systemd.services.<name>.serviceConfig", "systemd.timers.<name>.timerConfig",
            "services.postgresql.identMap"} <= paths  # fmt: skip


def test_every_systemd_directive_the_module_sets_is_one(system: dict[str, Any]) -> None:
    for kind in ("services", "timers"):
        for name, unit in system["systemd"][kind].items():
            for section in ("serviceConfig", "unitConfig", "timerConfig"):
                option = f"systemd.{kind}.<name>.{section}"
                keys = set(unit.get(section, {}))
                if keys:
                    assert option in SYSTEMD_DIRECTIVES, option
                    assert keys - SYSTEMD_DIRECTIVES[option] == set(), (name, section)

"""What NixOS would write to /etc for ``services.steward``, rendered from the evaluated module
(tests/support/nixos_eval.py) and installed into the booted container.

Rendering follows nixpkgs' nixos/lib/systemd-lib.nix and nixos/modules/system/boot/systemd.nix:
``environment`` becomes quoted ``Environment=`` lines and ``path`` becomes PATH (``bin`` and
``sbin`` of each package); ``script`` becomes ``ExecStart=<store>/bin/<name>-start <scriptArgs>``,
a bash script that starts with ``set -e`` (makeJobScript); ``restartIfChanged = false`` becomes
``X-RestartIfChanged=false``; list values repeat the key. The packages' store paths exist in the
container as folders whose ``bin`` is Debian's /usr/bin, except Steward itself (the checkout
through the root's venv) and nixos-rebuild (a stand-in the test controls). A key the renderer
does not know fails the test rather than being dropped: the module must not outgrow it silently.
"""

from __future__ import annotations

import re
from typing import Any

from tests.systemd.container import PYTHON, Container

STORE_PATH = re.compile(r"/nix/store/[a-z0-9]{32}-[A-Za-z0-9+._?=-]+")
DUMMY_HASH = "0" * 32
# NixOS puts these on every unit's PATH after its own `path`; Debian's are the same tools.
DEFAULT_PATH = "/usr/bin:/usr/sbin"
KNOWN = {
    "description", "after", "wants", "wantedBy", "environment", "path", "serviceConfig",
    "unitConfig", "script", "scriptArgs", "restartIfChanged", "stopIfChanged",
}  # fmt: skip
STEWARD_WRAPPER = f"""#!/bin/sh
# Stands in for the package's `steward`: the checkout, through the root's venv.
export PYTHONDONTWRITEBYTECODE=1
exec {PYTHON} -m bot "$@"
"""
# What the stand-in nixos-rebuild does comes from a file the test writes as root.
NIXOS_REBUILD = f"""#!{PYTHON}
import json, sys, time
plan = json.load(open("/etc/steward-test/rebuild.json"))
print("nixos-rebuild", *sys.argv[1:], flush=True)
for line in plan["lines"]:
    print(line, flush=True)
    time.sleep(plan["pause"])
sys.exit(plan["exit"])
"""


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _script_name(unit: str) -> str:
    return unit.replace("\\", "-").replace("@", "_")


def render_service(name: str, service: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The unit file for ``systemd.services.<name>``, and the scripts it runs (path: text)."""
    unknown = set(service) - KNOWN
    if unknown:
        raise AssertionError(f"systemd.services.{name}: not rendered: {sorted(unknown)}")
    scripts: dict[str, str] = {}
    unit = [f"Description={service['description']}"]
    unit += [f"After={x}" for x in service.get("after", [])]
    unit += [f"Wants={x}" for x in service.get("wants", [])]
    if service.get("restartIfChanged") is False:
        unit.append("X-RestartIfChanged=false")
    if service.get("stopIfChanged") is False:
        unit.append("X-StopIfChanged=false")
    unit += [f"{k}={_value(v)}" for k, v in service.get("unitConfig", {}).items()]

    paths = service.get("path", [])
    search = [f"{p}/bin" for p in paths] + [f"{p}/sbin" for p in paths] + [DEFAULT_PATH]
    environment = {**service.get("environment", {}), "PATH": ":".join(search)}
    body = [f'Environment="{k}={v}"' for k, v in sorted(environment.items())]
    config = dict(service.get("serviceConfig", {}))
    if service.get("script"):
        script = f"{_script_name(name)}-start"
        path = f"/nix/store/{DUMMY_HASH}-unit-script-{script}/bin/{script}"
        scripts[path] = f"#!/bin/bash\nset -e\n{service['script']}\n"
        config["ExecStart"] = f"{path} {service.get('scriptArgs', '')}".rstrip()
    for key, setting in config.items():
        items = setting if isinstance(setting, list) else [setting]
        if items in ([""], []):
            body.append(f"{key}=")
        body += [f"{key}={_value(item)}" for item in items if item != ""]
    install = [f"WantedBy={x}" for x in service.get("wantedBy", [])]
    text = "\n".join(["[Unit]", *unit, "", "[Service]", *body, "", "[Install]", *install])
    return text + "\n", scripts


def install(container: Container, system: dict[str, Any]) -> dict[str, str]:
    """Users, /etc files, the polkit rule and the units of ``system``; returns the unit files."""
    for group in system["users"]["groups"]:
        container.run(["groupadd", "--system", group])
    for name, user in system["users"]["users"].items():
        container.run([
            "useradd", *(["--system"] if user.get("isSystemUser") else []),
            "--gid", user["group"], "--groups", ",".join(user.get("extraGroups", [])),
            "--home-dir", user["home"], "--no-create-home", "--shell", "/usr/sbin/nologin",
            "--comment", user.get("description", ""), name,
        ])  # fmt: skip
    for path, entry in system["environment"]["etc"].items():
        container.write(f"/etc/{path}", entry["text"])
    # NixOS writes security.polkit.extraConfig to this file.
    container.write(
        "/etc/polkit-1/rules.d/10-nixos.rules", system["security"]["polkit"]["extraConfig"]
    )
    rules = system["systemd"].get("tmpfiles", {}).get("rules", [])
    if rules:
        container.write("/etc/tmpfiles.d/00-nixos.conf", "\n".join(rules) + "\n")

    units: dict[str, str] = {}
    for name, service in system["systemd"]["services"].items():
        text, scripts = render_service(name, service)
        units[f"{name}.service"] = text
        container.write(f"/etc/systemd/system/{name}.service", text)
        for path, script in scripts.items():
            container.write(path, script, 0o755)
    _store(container, "\n".join(units.values()))
    container.run(["systemctl", "daemon-reload"])
    return units


def _store(container: Container, text: str) -> None:
    for path in sorted(set(STORE_PATH.findall(text))):
        package = path.split("-", 1)[1]
        if package.startswith("unit-script-"):
            continue
        if package.startswith("steward-"):
            container.write(f"{path}/bin/steward", STEWARD_WRAPPER, 0o755)
        elif package == "nixos-rebuild":
            container.write(f"{path}/bin/nixos-rebuild", NIXOS_REBUILD, 0o755)
        else:
            container.path(path).mkdir(parents=True)
            container.path(f"{path}/bin").symlink_to("/usr/bin")
            container.path(f"{path}/sbin").symlink_to("/usr/sbin")

"""The real-systemd suite: one container booted per session, with Steward's units, polkit rule
and user rendered from nixos/module.nix. `make systemd-test` builds the root and sets
STEWARD_SYSTEMD_ROOT; without it (plain `make test`) every test here is skipped. With it, a
root that is missing or does not boot fails the tests: CI must not pass on a skip."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import nixos_eval
from tests.systemd.container import Container
from tests.systemd.render import install

ROOT = Path(__file__).resolve().parents[2]
# What a server's configuration.nix would say, as tests/nixos does it: a catalogue with one
# backed-up service (app) and one without folders (web), restic on a local repository.
STEWARD = """{
  enable = true;
  settings = { restic_repository = "/srv/backups/repo"; };
  resticPasswordFile = "/etc/steward-test/restic-password";
  services = {
    app = { name = "App"; units = [ "app.service" ]; folders = [ "/srv/app" ]; };
    web = { name = "Web"; units = [ "web.service" ]; };
  };
}"""
# Stand-ins for the services' units: something that runs, so start, stop and restart show.
APP_UNIT = """[Unit]
Description=%N for the test

[Service]
ExecStart=/usr/bin/sleep infinity
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("STEWARD_SYSTEMD_ROOT"):
        return
    skip = pytest.mark.skip(reason="real systemd: run `make systemd-test`")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


class Booted:
    def __init__(self, container: Container, system: dict[str, Any], units: dict[str, str]):
        self.container = container
        self.system = system
        self.units = units


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = nixos_eval.nix_env(tmp_path_factory.mktemp("nix"))
    return nixos_eval.evaluate(env, STEWARD)


@pytest.fixture(scope="session")
def booted(tmp_path_factory: pytest.TempPathFactory, system: dict[str, Any]) -> Iterator[Booted]:
    root = Path(os.environ["STEWARD_SYSTEMD_ROOT"])
    if not (root / "usr/lib/systemd/systemd").exists():
        pytest.fail(f"no root at {root}: `make systemd-root` builds it")
    log = tmp_path_factory.mktemp("nspawn") / "console.log"
    container = Container(root, ROOT, log)
    try:
        container.boot()
        print(f"\nbooted in {container.boot_seconds:.2f} s")
        began = time.monotonic()
        container.write("/etc/steward-test/restic-password", "correct horse\n", 0o600)
        # nginx and ssh exist too, so that what refuses them is the rule, not a missing unit.
        for unit in ("app.service", "web.service", "nginx.service", "ssh.service"):
            container.write(f"/etc/systemd/system/{unit}", APP_UNIT)
        units = install(container, system)
        print(f"installed in {time.monotonic() - began:.2f} s")
        yield Booted(container, system, units)
    finally:
        container.stop()

"""A fake NixOS host for subprocess-level tests: fake systemctl, journalctl, nixos-rebuild, nix.

``FakeSystem(tmp_path)`` writes the state file and hands out the environment that puts the
fakes first on PATH. The state folder itself is the first PATH entry, so code that passes a
minimal environment with only PATH (as ``providers.host.systemd`` does) still finds the state.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakebin import _fakesys as fakesys

FAKEBIN = Path(__file__).resolve().parent / "fakebin"
TOOLS = ("systemctl", "journalctl", "nixos-rebuild", "nix")


class FakeSystem:
    def __init__(self, tmp_path: Path, hostname: str = "steward") -> None:
        self.dir = tmp_path / "fake-system"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root = self.dir / "root"
        self.state_path = self.dir / fakesys.STATE_FILENAME
        fakesys.save(self.state_path, fakesys.new_state(hostname, root=str(self.root)))
        original = os.environ.get("PATH", os.defpath)
        self.path = os.pathsep.join([str(self.dir), str(FAKEBIN), original])

    # --- environment ------------------------------------------------------------------------

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a subprocess: PATH with the fakes first, and FAKE_SYSTEM_STATE."""
        env = dict(os.environ if base is None else base)
        env.update(
            {"PATH": self.path, fakesys.STATE_ENV: str(self.state_path), "LC_ALL": "C", "TZ": "UTC"}
        )
        return env

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put the fakes first on this process's PATH, for code that spawns by name."""
        monkeypatch.setenv("PATH", self.path)
        monkeypatch.setenv(fakesys.STATE_ENV, str(self.state_path))

    def run(
        self, *argv: str, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the fakes (by name, through PATH) and capture its output."""
        return subprocess.run(
            list(argv),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=self.dir,
        )

    # --- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return fakesys.load(self.state_path)

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Change the state by hand, under the same lock as the fakes."""
        with fakesys.locked(self.state_path) as state:
            yield state

    # --- units --------------------------------------------------------------------------------

    def add_unit(
        self,
        name: str,
        *,
        description: str | None = None,
        active_state: str = "active",
        sub_state: str | None = None,
        unit_type: str = "simple",
        memory: int | None = 52_428_800,
    ) -> str:
        with self.edit() as state:
            unit = fakesys.add_unit(
                state,
                name,
                description=description,
                active_state=active_state,
                sub_state=sub_state,
                unit_type=unit_type,
                memory=memory,
            )
        full: str = unit["Id"]
        return full

    def set_unit(
        self,
        name: str,
        *,
        active_state: str | None = None,
        sub_state: str | None = None,
        failed: bool | None = None,
        **props: Any,
    ) -> None:
        """Change a unit: its state (timestamps follow), ``failed=True``, or raw properties."""
        name = fakesys.unit_name(name)
        with self.edit() as state:
            unit = state["units"][name]
            if failed:
                active_state, props["Result"] = "failed", props.get("Result", "exit-code")
            elif failed is False and active_state is None:
                active_state = "inactive"
            if active_state is not None:
                fakesys.set_active(state, name, active_state, sub_state)
            elif sub_state is not None:
                unit["SubState"] = sub_state
            unit.update(props)

    def remove_unit(self, name: str) -> None:
        with self.edit() as state:
            state["units"].pop(fakesys.unit_name(name), None)

    def unit(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.state()["units"][fakesys.unit_name(name)]
        return found

    def wait_for_unit(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a oneshot is no longer activating; return the unit."""
        deadline = time.monotonic() + timeout
        while True:
            unit = self.unit(name)
            if unit["ActiveState"] != "activating":
                return unit
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} still activating after {timeout} s")
            time.sleep(0.02)

    # --- failure injection -------------------------------------------------------------------

    def fail_next_start(
        self, unit: str, message: str = "Failed to bind: Address in use", times: int = 1
    ) -> None:
        with self.edit() as state:
            state["failures"]["start"][fakesys.unit_name(unit)] = {
                "message": message,
                "times": times,
            }

    def fail_rebuild(
        self,
        message: str = "error: attribute 'nextclud' missing",
        times: int = 1,
    ) -> None:
        """The next ``times`` rebuilds fail in the build with ``message`` as the builder log."""
        with self.edit() as state:
            state["failures"]["rebuild"] = {"message": message, "times": times}

    def rebuild_delay(self, seconds: float) -> None:
        """Sleep this long between the phases of every rebuild."""
        with self.edit() as state:
            state["failures"]["rebuild_delay"] = seconds

    def hold_rebuild(self) -> None:
        """Every rebuild stays in its build phase (having printed "building the system
        configuration...") until release_rebuild()."""
        with self.edit() as state:
            state["failures"]["rebuild_held"] = True

    def release_rebuild(self) -> None:
        with self.edit() as state:
            state["failures"]["rebuild_held"] = False

    # --- calls and journal ------------------------------------------------------------------

    def calls(self, tool: str | None = None) -> list[list[str]]:
        """Every invocation as ``[tool, *args]``, oldest first."""
        calls: list[list[str]] = self.state()["calls"]
        return [call for call in calls if tool is None or call[0] == tool]

    def clear_calls(self) -> None:
        with self.edit() as state:
            state["calls"] = []

    def journal(self, unit: str) -> list[str]:
        """The messages of ``unit``'s journal, systemd's own lines about it included."""
        entries = self.state()["journal"].get(fakesys.unit_name(unit), [])
        return [entry["message"] for entry in entries]

    def add_journal(
        self,
        unit: str,
        message: str,
        *,
        at: datetime | None = None,
        ident: str | None = None,
        pid: int | None = None,
        priority: int = 6,
    ) -> None:
        at_us = None if at is None else int(at.timestamp() * 1_000_000)
        with self.edit() as state:
            fakesys.append_journal(
                state,
                fakesys.unit_name(unit),
                message,
                ident=ident,
                pid=pid,
                at_us=at_us,
                priority=priority,
            )

    # --- generations ------------------------------------------------------------------------

    def generations(self) -> list[dict[str, Any]]:
        """Oldest first; each as in ``nixos-rebuild list-generations --json`` plus internals."""
        generations: list[dict[str, Any]] = self.state()["generations"]
        return generations

    def current_generation(self) -> int:
        return int(fakesys.current_generation(self.state())["generation"])

    def add_generation(
        self,
        *,
        nixos_version: str | None = None,
        kernel: str | None = None,
        packages: Mapping[str, Sequence[Any]] | None = None,
        current: bool = True,
        date: str | None = None,
    ) -> int:
        """A new generation; ``current`` switches to it (profile and /run/current-system)."""
        with self.edit() as state:
            generation = fakesys.add_generation(
                state,
                nixos_version=nixos_version,
                kernel=kernel,
                packages=packages,
                current=current,
                date=date,
            )
        return int(generation["generation"])

    def stage_next(
        self,
        *,
        nixos_version: str | None = None,
        kernel: str | None = None,
        packages: Mapping[str, Sequence[Any]] | None = None,
        new_units: Sequence[str] = (),
        flake_inputs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """What the next rebuild's generation brings (packages: name -> [version, bytes])."""
        with self.edit() as state:
            staged = state["staged"]
            if nixos_version:
                staged["nixos_version"] = nixos_version
            if kernel:
                staged["kernel"] = kernel
            if packages:
                staged["packages"] = {k: list(v) for k, v in packages.items()}
            if new_units:
                staged["new_units"] = [fakesys.unit_name(u) for u in new_units]
            if flake_inputs:
                staged["flake_inputs"] = {k: dict(v) for k, v in flake_inputs.items()}

    def set_booted_kernel(self, kernel: str) -> None:
        """The kernel of /run/booted-system (the running kernel)."""
        with self.edit() as state:
            state["booted_system"]["kernel"] = kernel
            fakesys.sync_links(state)

    def reboot_needed(self) -> bool:
        state = self.state()
        return bool(state["booted_system"]["kernel"] != state["current_system"]["kernel"])

"""Unit status and control through systemctl.

Status comes from one ``systemctl show`` call for all units: never one call per unit.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "StateChangeTimestamp",
    "MemoryCurrent",
)


class Health(enum.IntEnum):
    """A service is as healthy as its worst unit; higher is worse."""

    ACTIVE = 0
    CHANGING = 1
    OFF = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return {0: "active", 1: "changing", 2: "off", 3: "failed"}[self.value]


@dataclass(frozen=True, slots=True)
class UnitStatus:
    name: str
    load_state: str
    active_state: str
    sub_state: str
    since: datetime | None = None
    memory_bytes: int | None = None

    @property
    def health(self) -> Health:
        if self.active_state == "failed":
            return Health.FAILED
        if self.load_state in {"not-found", "masked", "error"} or self.active_state == "inactive":
            return Health.OFF
        if self.active_state == "active":
            return Health.ACTIVE
        return Health.CHANGING


def missing(unit: str) -> UnitStatus:
    return UnitStatus(unit, "not-found", "inactive", "dead")


def worst(statuses: Sequence[UnitStatus]) -> Health:
    return max((status.health for status in statuses), default=Health.OFF)


class UnitError(Exception):
    """systemctl failed; the message is short and safe to show."""


class ServiceManager(Protocol):
    async def status(self, units: Sequence[str]) -> dict[str, UnitStatus]:
        """Every asked unit is in the answer; one that systemd does not know is ``missing``."""
        ...

    async def failed_units(self) -> list[str]: ...

    async def start(self, unit: str) -> None: ...

    async def stop(self, unit: str) -> None: ...

    async def restart(self, unit: str) -> None: ...

    async def logs(self, units: Sequence[str], lines: int) -> list[str]:
        """The newest ``lines`` journal lines of ``units`` together, oldest first."""
        ...

    async def reboot(self) -> None:
        """Ask systemd to reboot the machine; it returns before the machine goes down."""
        ...


class SystemctlServiceManager:
    """The real adapter: ``systemctl`` from PATH, argument lists, timeouts."""

    def __init__(self, timeout: float = 30.0, restart_timeout: float = 300.0) -> None:
        self._timeout = timeout
        self._restart_timeout = restart_timeout

    async def status(self, units: Sequence[str]) -> dict[str, UnitStatus]:
        if not units:
            return {}
        out = await _systemctl(
            ["show", f"--property={','.join(SHOW_PROPERTIES)}", "--", *units], self._timeout
        )
        parsed = {status.name: status for status in parse_show(out)}
        return {unit: parsed.get(unit, missing(unit)) for unit in units}

    async def failed_units(self) -> list[str]:
        out = await _systemctl(
            ["list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"],
            self._timeout,
        )
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    async def start(self, unit: str) -> None:
        await _systemctl(["start", "--", unit], self._restart_timeout)

    async def stop(self, unit: str) -> None:
        await _systemctl(["stop", "--", unit], self._restart_timeout)

    async def restart(self, unit: str) -> None:
        await _systemctl(["restart", "--", unit], self._restart_timeout)

    async def reboot(self) -> None:
        await _systemctl(["reboot"], self._timeout)

    async def logs(self, units: Sequence[str], lines: int) -> list[str]:
        selectors = [arg for unit in units for arg in ("--unit", unit)]
        out = await run_tool(
            "journalctl",
            [*selectors, "--lines", str(lines), "--output", "short-iso", "--no-pager", "--quiet"],
            self._timeout,
        )
        return out.splitlines()


async def _systemctl(args: list[str], limit: float) -> str:
    return await run_tool("systemctl", args, limit)


async def run_tool(tool: str, args: list[str], limit: float, cwd: str | None = None) -> str:
    """Run a system tool from PATH: an argument list, a minimal environment, a time limit.
    Its failure becomes a ``UnitError`` with the line that says why."""
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
    try:
        proc = await asyncio.create_subprocess_exec(
            tool,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
    except OSError as exc:
        raise UnitError(f"cannot run {tool}: {exc.strerror}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise UnitError(f"{tool} {args[0]} timed out after {limit:g} s") from None
    if proc.returncode != 0:
        raise UnitError(_reason(err.decode(errors="replace")) or f"{tool} exited {proc.returncode}")
    return out.decode(errors="replace")


def _reason(stderr: str) -> str:
    """The line that says what went wrong: systemctl adds warnings before it and a hint
    ('See "systemctl status x.service" ...') after it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # nix and nixos-rebuild print their progress on stderr too; their reason says "error:".
    errors = [line for line in lines if line.startswith("error:")]
    useful = [line for line in lines if not line.startswith(("Warning:", "See ", "Hint:"))]
    return (errors or useful or lines or [""])[0]


def parse_show(text: str) -> list[UnitStatus]:
    """Parse ``systemctl show`` output: key=value blocks separated by blank lines."""
    statuses = []
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        statuses.append(
            UnitStatus(
                name=props["Id"],
                load_state=props.get("LoadState", ""),
                active_state=props.get("ActiveState", ""),
                sub_state=props.get("SubState", ""),
                since=_timestamp(props.get("StateChangeTimestamp", "")),
                memory_bytes=_memory(props.get("MemoryCurrent", "")),
            )
        )
    return statuses


def _memory(value: str) -> int | None:
    # systemd prints 2^64-1 ("[not set]" on newer versions) when there is no accounting.
    return int(value) if value.isdigit() and int(value) < 2**63 else None


def _timestamp(value: str) -> datetime | None:
    # "Sat 2026-11-28 14:03:11 UTC": systemd prints local time with the zone abbreviation.
    parts = value.split()
    if len(parts) < 3:
        return None
    try:
        naive = datetime.strptime(f"{parts[1]} {parts[2]}", "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    except ValueError:
        return None
    if len(parts) > 3 and parts[3] == "UTC":
        return naive.replace(tzinfo=UTC)
    return naive.astimezone(UTC)

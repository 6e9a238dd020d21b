"""Unit status and control through systemctl.

Status comes from one ``systemctl show`` call for all units: never one call per unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from providers.host.base import UnitStatus, missing, run_tool

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "StateChangeTimestamp",
    "MemoryCurrent",
)


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

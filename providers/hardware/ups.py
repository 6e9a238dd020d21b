"""A UPS through NUT: ``upsc <ups>`` prints ``key: value`` lines (battery.charge,
battery.runtime in seconds, ups.status as space-separated flags such as ``OL``, ``OB LB``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from providers.host.base import UnitError, run_tool


@dataclass(frozen=True, slots=True)
class UpsStatus:
    name: str
    flags: frozenset[str]  # OL on line, OB on battery, LB low battery, RB replace battery …
    charge: float | None = None  # percent
    runtime_seconds: float | None = None

    @property
    def on_battery(self) -> bool:
        return "OB" in self.flags

    @property
    def low_battery(self) -> bool:
        return "LB" in self.flags

    @property
    def runtime_minutes(self) -> float | None:
        return self.runtime_seconds / 60 if self.runtime_seconds is not None else None


class UpsProbe(Protocol):
    async def status(self) -> UpsStatus:
        """OSError with a short reason when NUT does not answer."""
        ...


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_upsc(name: str, text: str) -> UpsStatus:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    if "ups.status" not in values:
        raise OSError(f"upsc {name} gave no ups.status")
    return UpsStatus(
        name,
        frozenset(values["ups.status"].split()),
        _number(values.get("battery.charge")),
        _number(values.get("battery.runtime")),
    )


class NutUps:
    """The real adapter: ``upsc`` from PATH asks upsd (TCP 3493), which needs no privilege."""

    def __init__(self, name: str, timeout: float = 15.0) -> None:
        self.name = name
        self._timeout = timeout

    async def status(self) -> UpsStatus:
        try:
            out = await run_tool("upsc", [self.name], self._timeout)
        except UnitError as exc:
            raise OSError(str(exc)) from None
        return parse_upsc(self.name, out)


@dataclass
class MemoryUps:
    value: UpsStatus
    down: bool = False

    async def status(self) -> UpsStatus:
        if self.down:
            raise OSError("Error: Driver not connected")
        return self.value

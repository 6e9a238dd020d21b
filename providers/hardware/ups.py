"""A UPS through NUT: ``upsc <ups>`` prints ``key: value`` lines (battery.charge,
battery.runtime in seconds, ups.status as space-separated flags such as ``OL``, ``OB LB``)."""

from __future__ import annotations

from providers.hardware.base import UpsStatus
from providers.host.base import UnitError, run_tool


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

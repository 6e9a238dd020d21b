"""The service catalogue: what each service is, which units and folders it has.

A service's ``units`` are its own: the bot may start, stop and restart them. Its
``shared_units`` are those it needs but shares with other services (nginx, postgresql, redis):
they are shown with it, and never stopped or restarted on its behalf.

The NixOS module writes it as JSON into /etc; the demo and the tests ship their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from values import value

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]{1,200}\.(service|timer|socket|target|mount|path)$")


class CatalogueError(Exception):
    """The catalogue file is missing or malformed; the message says where."""


@value
class ServiceInfo:
    id: str
    name: str
    description: str
    units: tuple[str, ...]
    folders: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    subdomains: tuple[str, ...] = ()
    movable: bool = False
    backup: str = ""
    shared_units: tuple[str, ...] = ()
    # It ran before Steward came: the first start records it as enabled (nothing changes).
    already_running: bool = False

    @property
    def shown_units(self) -> tuple[str, ...]:
        """What its status is made of: its own units, then the shared ones."""
        return self.units + self.shared_units


class ServiceCatalogue(Mapping[str, ServiceInfo]):
    def __init__(self, services: list[ServiceInfo]) -> None:
        self._by_id = {service.id: service for service in services}
        if len(self._by_id) != len(services):
            raise CatalogueError("the catalogue names a service twice")
        shared = {unit for service in services for unit in service.shared_units}
        own = {unit for service in services for unit in service.units}
        if clash := sorted(shared & own):
            raise CatalogueError(
                f"{clash[0]} is one service's own unit and another's shared unit: "
                "a shared unit is never a service's to stop"
            )

    def __getitem__(self, key: str) -> ServiceInfo:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_id))

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def all_units(self) -> tuple[str, ...]:
        """Every unit the catalogue shows, own and shared, each once."""
        units = (unit for sid in self for unit in self[sid].shown_units)
        return tuple(dict.fromkeys(units))

    @classmethod
    def from_json(cls, data: object) -> ServiceCatalogue:
        if not isinstance(data, dict) or not isinstance(data.get("services"), list):
            raise CatalogueError('expected {"services": [...]}')
        return cls([_service(raw, index) for index, raw in enumerate(data["services"])])

    @classmethod
    def load(cls, path: Path) -> ServiceCatalogue:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogueError(f"{path}: {exc.strerror}") from None
        except ValueError as exc:
            raise CatalogueError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_json(data)
        except CatalogueError as exc:
            raise CatalogueError(f"{path}: {exc}") from None


def _strings(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CatalogueError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _unit_names(raw: dict[str, Any], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    units = _strings(raw, key, where)
    if (required and not units) or not all(_UNIT.fullmatch(unit) for unit in units):
        raise CatalogueError(f"{where}: {key} must be systemd unit names")
    return units


def _service(raw: object, index: int) -> ServiceInfo:
    where = f"services[{index}]"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected an object")
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        raise CatalogueError(f"{where}: id must match {_ID.pattern}")
    units = _unit_names(raw, "units", where, required=True)
    return ServiceInfo(
        id=sid,
        name=str(raw.get("name", sid)),
        description=str(raw.get("description", "")),
        units=units,
        folders=_strings(raw, "folders", where),
        databases=_strings(raw, "databases", where),
        subdomains=_strings(raw, "subdomains", where),
        movable=bool(raw.get("movable", False)),
        backup=str(raw.get("backup", "")),
        shared_units=_unit_names(raw, "shared_units", where, required=False),
        already_running=raw.get("already_running", False) is True,
    )

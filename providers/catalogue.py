"""The service catalogue: what each service is, which units and folders it has.

The NixOS module writes it as JSON into /etc; the demo and the tests ship their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]{1,200}\.(service|timer|socket|target|mount|path)$")


class CatalogueError(Exception):
    """The catalogue file is missing or malformed; the message says where."""


@dataclass(frozen=True, slots=True)
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


class ServiceCatalogue(Mapping[str, ServiceInfo]):
    def __init__(self, services: list[ServiceInfo]) -> None:
        self._by_id = {service.id: service for service in services}
        if len(self._by_id) != len(services):
            raise CatalogueError("the catalogue names a service twice")

    def __getitem__(self, key: str) -> ServiceInfo:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_id))

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def all_units(self) -> tuple[str, ...]:
        return tuple(unit for sid in self for unit in self[sid].units)

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


def _service(raw: object, index: int) -> ServiceInfo:
    where = f"services[{index}]"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected an object")
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.fullmatch(sid):
        raise CatalogueError(f"{where}: id must match {_ID.pattern}")
    units = _strings(raw, "units", where)
    if not units or not all(_UNIT.fullmatch(unit) for unit in units):
        raise CatalogueError(f"{where}: units must be systemd unit names")
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
    )

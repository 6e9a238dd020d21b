"""What a desired state may hold: the JSON Schema (``desired-state.schema.json``), and what a
schema cannot say (key blobs, the time zone database, the catalogue's ids). The bot checks
before it writes; root checks again before it applies (``providers.nixos.admission``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from providers.nixos.sshkeys import NotAKeyError, key_blob

SCHEMA_PATH = Path(__file__).with_name("desired-state.schema.json")


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def validate(data: object) -> list[str]:
    """Every way ``data`` breaks the schema, as ``where: what`` sentences; empty when valid.

    It implements the part of JSON Schema the schema file uses (type, enum, required,
    properties, additionalProperties, propertyNames, pattern, maxLength, items, maxItems,
    uniqueItems, local $ref); the tests check it agrees with the jsonschema library."""
    root = schema()
    problems: list[str] = []
    _check(data, root, root, "desired state", problems)
    return problems


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def _check(  # noqa: PLR0912 - one branch per keyword reads better than a table of closures
    value: object, rule: Mapping[str, Any], root: Mapping[str, Any], where: str, out: list[str]
) -> None:
    if "$ref" in rule:
        name = str(rule["$ref"]).removeprefix("#/$defs/")
        _check(value, root["$defs"][name], root, where, out)
        return
    kind = rule.get("type")
    if kind is not None and not _TYPES[kind](value):
        out.append(f"{where}: must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
        return
    if "enum" in rule and not any(_same(value, option) for option in rule["enum"]):
        out.append(f"{where}: must be one of {', '.join(map(json.dumps, rule['enum']))}")
    if isinstance(value, str):
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            out.append(f"{where}: longer than {rule['maxLength']} characters")
        if "pattern" in rule and not _pattern(rule["pattern"]).search(value):
            out.append(f"{where}: {json.dumps(value[:40])} is not allowed here")
    if isinstance(value, list):
        if "maxItems" in rule and len(value) > rule["maxItems"]:
            out.append(f"{where}: more than {rule['maxItems']} items")
        if rule.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(
            value
        ):
            out.append(f"{where}: lists an item twice")
        if "items" in rule:
            for index, item in enumerate(value):
                _check(item, rule["items"], root, f"{where}[{index}]", out)
    if isinstance(value, dict):
        properties: Mapping[str, Any] = rule.get("properties", {})
        out.extend(
            f"{where}: {key} is missing" for key in rule.get("required", ()) if key not in value
        )
        for key, item in value.items():
            inner = f"{where}.{key}" if where != "desired state" else str(key)
            if "propertyNames" in rule:
                _check(key, rule["propertyNames"], root, f"{where}: the name {key!r}", out)
            if key in properties:
                _check(item, properties[key], root, inner, out)
                continue
            extra = rule.get("additionalProperties", True)
            if extra is False:
                out.append(f"{where}: unknown key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, inner, out)


@cache
def _pattern(source: str) -> re.Pattern[str]:
    """A schema pattern as JSON Schema means it: there, ``$`` is the end of the text; in
    Python it also matches before a final newline, which let ``KEY\\n`` through."""
    if source.endswith("$") and not source.endswith("\\$"):
        source = source[:-1] + r"\Z"
    return re.compile(source)


def check(data: object, services: Collection[str] | None = None) -> list[str]:
    """The schema, then what a schema cannot say: each root key's blob decodes to a key of
    its type, the time zone is in the zone database, and (given the catalogue's ids) each
    service is one this server has. The bot checks this before it writes; root checks it
    again before it applies (``providers.nixos.admission``)."""
    problems = validate(data)
    if problems or not isinstance(data, dict):
        return problems
    system = data["system"]
    for index, key in enumerate(system.get("ssh", {}).get("rootKeys", [])):
        try:
            key_blob(key)
        except NotAKeyError as exc:
            problems.append(f"system.ssh.rootKeys[{index}]: not a public key: {exc}")
    zone = system.get("timezone")
    if zone is not None and not known_zone(zone):
        problems.append(f"system.timezone: {zone} is not in the time zone database")
    if services is not None:
        problems.extend(
            f"services: {sid} is not in the catalogue" for sid in data["services"]
            if sid not in services
        )  # fmt: skip
    return problems


def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        # A folder of the zone database ("Europe") is an OSError when tzdata is installed.
        return False
    return True


def _same(value: object, option: object) -> bool:
    # JSON Schema: true is not 1.
    return type(value) is type(option) and value == option

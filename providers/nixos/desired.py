"""The desired state: what the owners chose from chat, as a JSON file the NixOS module reads.

The file is checked against ``desired-state.schema.json`` before every write, and written the
way that survives a crash at any point: under a lock, to a temporary file in the same folder,
fsync, rename over the old one, fsync of the folder. The version it replaces is kept beside it
as ``<name>.previous``. A file that is corrupt on disk is reported and never overwritten: the
owner may have edited it by hand, and only they know what they meant.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from providers.nixos.sshkeys import NotAKeyError, key_blob

SCHEMA_PATH = Path(__file__).with_name("desired-state.schema.json")
VERSION = 1
CODES_PATH = "system.ssh.rootKeyCodes"


class DesiredStateError(Exception):
    """The desired-state file cannot be read, is corrupt, or a change would make it invalid.
    The message is short and says which file and what is wrong."""


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceState:
    enable: bool
    subdomain: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class SystemState:
    """None means "not chosen from chat": the NixOS configuration decides."""

    timezone: str | None = None
    auto_upgrade: bool | None = None
    allow_reboot: bool | None = None
    ssh_password_auth: bool | None = None
    root_keys: tuple[str, ...] = ()
    # (fingerprint, TOTP code, Unix time it was given): the proof root asks of a key added
    # from chat. Root checks it, never the bot: the bot cannot read the secret.
    root_key_codes: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DesiredState:
    services: Mapping[str, ServiceState] = field(default_factory=dict)
    system: SystemState = field(default_factory=SystemState)

    def enabled(self, service_id: str) -> bool:
        state = self.services.get(service_id)
        return state is not None and state.enable

    def with_service(self, service_id: str, *, enable: bool) -> DesiredState:
        current = self.services.get(service_id, ServiceState(enable=False))
        services = dict(self.services)
        services[service_id] = replace(current, enable=enable)
        return replace(self, services=services)

    def with_system(self, **changes: Any) -> DesiredState:
        return replace(self, system=replace(self.system, **changes))

    def to_json(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for sid in sorted(self.services):
            state = self.services[sid]
            item: dict[str, Any] = {"enable": state.enable}
            if state.subdomain is not None:
                item["subdomain"] = state.subdomain
            if state.location is not None:
                item["location"] = state.location
            services[sid] = item
        system: dict[str, Any] = {}
        sysstate = self.system
        if sysstate.timezone is not None:
            system["timezone"] = sysstate.timezone
        if sysstate.auto_upgrade is not None:
            system["autoUpgrade"] = {
                "enable": sysstate.auto_upgrade,
                "allowReboot": bool(sysstate.allow_reboot),
            }
        ssh: dict[str, Any] = {}
        if sysstate.ssh_password_auth is not None:
            ssh["passwordAuthentication"] = sysstate.ssh_password_auth
        if sysstate.root_keys:
            ssh["rootKeys"] = list(sysstate.root_keys)
        if sysstate.root_key_codes:
            ssh["rootKeyCodes"] = {
                print_: {"code": code, "at": at} for print_, code, at in sysstate.root_key_codes
            }
        if ssh:
            system["ssh"] = ssh
        return {"version": VERSION, "services": services, "system": system}

    @classmethod
    def from_json(cls, data: object) -> DesiredState:
        problems = validate(data)
        if problems:
            raise DesiredStateError(problems[0])
        assert isinstance(data, dict)  # noqa: S101 - validate() checked it
        services = {
            sid: ServiceState(raw["enable"], raw.get("subdomain"), raw.get("location"))
            for sid, raw in data["services"].items()
        }
        system = data["system"]
        upgrade = system.get("autoUpgrade")
        ssh = system.get("ssh", {})
        return cls(
            services,
            SystemState(
                timezone=system.get("timezone"),
                auto_upgrade=None if upgrade is None else upgrade["enable"],
                allow_reboot=None if upgrade is None else upgrade["allowReboot"],
                ssh_password_auth=ssh.get("passwordAuthentication"),
                root_keys=tuple(ssh.get("rootKeys", ())),
                root_key_codes=tuple(
                    (print_, proof["code"], proof["at"])
                    for print_, proof in sorted(ssh.get("rootKeyCodes", {}).items())
                ),
            ),
        )

    def render(self) -> bytes:
        """The bytes on disk: stable key order, so equal states are equal files."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def first_start(already_running: Iterable[str]) -> DesiredState:
    """What the bot records on its first start: the services that already ran before it came
    (the catalogue's ``already_running``) as enabled, so the first deploy turns nothing off.
    nixos/desired-state.nix assumes the same while there is no file."""
    return DesiredState({sid: ServiceState(enable=True) for sid in sorted(already_running)})


@dataclass(frozen=True, slots=True)
class Change:
    """One leaf of the JSON that differs: ``services.nextcloud.enable: false → true``."""

    path: str
    before: object
    after: object


def diff(before: DesiredState, after: DesiredState) -> list[Change]:
    old, new = _flatten(before.to_json()), _flatten(after.to_json())
    return [
        Change(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        # A code is proof for root, not a change to show: the key beside it is.
        if old.get(path) != new.get(path) and not path.startswith(CODES_PATH)
    ]


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict) and value:
        flat: dict[str, object] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


# --- the schema ---------------------------------------------------------------------------------


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


# --- the file -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """A change that was written: what it replaced, and the digest of what is on disk now."""

    before: DesiredState
    after: DesiredState
    digest: str

    @property
    def changes(self) -> list[Change]:
        return diff(self.before, self.after)


class DesiredStateStore(Protocol):
    async def read(self) -> DesiredState: ...

    async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        """Apply ``change`` to the current state and write the result, atomically."""
        ...

    async def restore(self, digest: str) -> bool:
        """Put the previous version back, if the file still holds the one with ``digest``.

        False when someone changed the file since: their change is kept."""
        ...


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DesiredStateFile:
    """The real store. ``before_rename`` is a test hook: it runs with the new file complete on
    disk, just before the rename makes it the current one."""

    def __init__(
        self, path: Path, *, before_rename: Callable[[], None] | None = None, mode: int = 0o640
    ) -> None:
        self.path = path
        self.previous_path = path.with_name(path.name + ".previous")
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._before_rename = before_rename
        self._mode = mode

    async def read(self) -> DesiredState:
        return await asyncio.to_thread(self.read_sync)

    async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        return await asyncio.to_thread(self.update_sync, change)

    async def restore(self, digest: str) -> bool:
        return await asyncio.to_thread(self.restore_sync, digest)

    def read_sync(self) -> DesiredState:
        return self._parse(self._read_bytes(self.path), self.path)

    def update_sync(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        with self._locked():
            before = self.read_sync()
            after = change(before)
            data = after.render()
            problems = check(json.loads(data))
            if problems:
                raise DesiredStateError(f"not written: {problems[0]}")
            if after == before:
                return Written(before, after, digest_of(before.render()))
            current = self._read_bytes(self.path)
            if current is not None:
                self._write_atomic(self.previous_path, current, hook=False)
            self._write_atomic(self.path, data, hook=True)
            return Written(before, after, digest_of(data))

    def create_sync(self, state: DesiredState) -> bool:
        """Write ``state`` when there is no file yet (the bot's first start); False, touching
        nothing, when there is one."""
        with self._locked():
            if self._read_bytes(self.path) is not None:
                return False
            data = state.render()
            if problems := validate(json.loads(data)):
                raise DesiredStateError(f"not written: {problems[0]}")
            self._write_atomic(self.path, data, hook=True)
            return True

    def restore_sync(self, digest: str) -> bool:
        with self._locked():
            current = self._read_bytes(self.path)
            if current is None or digest_of(current) != digest:
                return False
            previous = self._read_bytes(self.previous_path)
            if previous is None:
                # There was no file before the change: the empty state is what it was.
                previous = DesiredState().render()
            self._parse(previous, self.previous_path)
            self._write_atomic(self.previous_path, current, hook=False)
            self._write_atomic(self.path, previous, hook=True)
            return True

    # -- plumbing --

    def _read_bytes(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DesiredStateError(f"cannot read {path}: {exc.strerror}") from None

    @staticmethod
    def _parse(data: bytes | None, path: Path) -> DesiredState:
        if data is None:
            return DesiredState()
        try:
            loaded = json.loads(data)
        except ValueError as exc:
            raise DesiredStateError(
                f"{path} is not valid JSON ({exc}). Fix or remove it; Steward will not "
                "overwrite it."
            ) from None
        try:
            return DesiredState.from_json(loaded)
        except DesiredStateError as exc:
            raise DesiredStateError(
                f"{path} does not fit the schema ({exc}). Fix or remove it; Steward will not "
                "overwrite it."
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_leftovers()
            yield
        finally:
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer that died before its rename: never the real file."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _write_atomic(self, path: Path, data: bytes, *, hook: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, self._mode)
            if hook and self._before_rename is not None:
                self._before_rename()
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@dataclass
class MemoryDesiredState:
    """The demo's and the handler tests' store: same rules, no disk. ``corrupt`` makes every
    call fail as a corrupt file would."""

    state: DesiredState = field(default_factory=DesiredState)
    previous: DesiredState | None = None
    corrupt: bool = False
    writes: int = 0

    def _check(self) -> None:
        if self.corrupt:
            raise DesiredStateError(
                "desired-state.json is not valid JSON (line 1). Fix or remove it; Steward will "
                "not overwrite it."
            )

    async def read(self) -> DesiredState:
        self._check()
        return self.state

    async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        self._check()
        before = self.state
        after = change(before)
        problems = check(after.to_json())
        if problems:
            raise DesiredStateError(f"not written: {problems[0]}")
        if after != before:
            self.previous, self.state = before, after
            self.writes += 1
        return Written(before, after, digest_of(after.render()))

    async def restore(self, digest: str) -> bool:
        self._check()
        if digest_of(self.state.render()) != digest:
            return False
        self.state, self.previous = self.previous or DesiredState(), self.state
        self.writes += 1
        return True

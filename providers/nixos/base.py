"""The NixOS system: the Protocols of the desired-state store, the rebuild units and the system
itself, and the types they take and return.

The adapters are ``desired.DesiredStateFile``, ``rebuild.SystemdRebuilds`` and
``system.NixosRebuildSystem``; the fake store is in ``memory``. What a desired state may hold
(the JSON Schema and the checks a schema cannot express) is in ``validation``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from providers.nixos.validation import validate
from values import value

VERSION = 1
CODES_PATH = "system.ssh.rootKeyCodes"


class DesiredStateError(Exception):
    """The desired-state file cannot be read, is corrupt, or a change would make it invalid.
    The message is short and says which file and what is wrong."""


# --- the desired state --------------------------------------------------------------------------


@value
class ServiceState:
    enable: bool
    subdomain: str | None = None
    location: str | None = None


@value
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


@value
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


@value
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


@value
class Written:
    """A change that was written: what it replaced, and the digest of what is on disk now."""

    before: DesiredState
    after: DesiredState
    digest: str

    @property
    def changes(self) -> list[Change]:
        return diff(self.before, self.after)


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class DesiredStateStore(Protocol):
        async def read(self) -> DesiredState: ...

        async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
            """Apply ``change`` to the current state and write the result, atomically."""
            ...

        async def restore(self, digest: str) -> bool:
            """Put the previous version back, if the file still holds the one with ``digest``.

            False when someone changed the file since: their change is kept."""
            ...

    class Rebuilds(Protocol):
        async def busy(self) -> str | None:
            """The steward unit that runs now, if any."""
            ...

        async def prepare(self, unit: str) -> RebuildRun:
            """Note where the unit and its journal stand; join the run when it already runs."""
            ...

        async def start(self, run: RebuildRun) -> RebuildRun:
            """Start the unit without waiting for it; a joined run is not started again."""
            ...

        async def poll(self, run: RebuildRun) -> RebuildPoll:
            """New journal lines since the last poll, and whether the run has ended."""
            ...

    class NixosSystem(Protocol):
        async def generations(self) -> list[Generation]:
            """Newest first."""
            ...

        async def reboot_needed(self) -> bool | None:
            """None when it cannot be told (not NixOS, or the links are missing)."""
            ...

        async def preview_upgrade(self, flake: str) -> list[str]:
            """Build what an upgrade of ``flake`` would switch to, without switching or writing
            the lock file, and list how its closure differs from the running system's."""
            ...


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the rebuild units --------------------------------------------------------------------------

REBUILD_UNIT = "steward-rebuild.service"
UPGRADE_UNIT = "steward-upgrade.service"
STEWARD_UNITS = (REBUILD_UNIT, UPGRADE_UNIT)
_ROLLBACK = re.compile(r"steward-rollback@([0-9]{1,9})\.service")


def rollback_unit(generation: int) -> str:
    return f"steward-rollback@{generation}.service"


def is_steward_unit(unit: str) -> bool:
    return unit in STEWARD_UNITS or _ROLLBACK.fullmatch(unit) is not None


@value
class RebuildRun:
    unit: str
    before_id: str  # the unit's invocation before our start ("" when it never ran)
    run_id: str = ""  # the invocation we follow, once it is known
    cursor: str = ""  # the journal cursor of the last line read
    joined: bool = False  # it was already running: we follow someone else's run
    started: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RebuildRun:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@value
class RebuildPoll:
    run: RebuildRun
    lines: tuple[str, ...]
    finished: bool
    succeeded: bool


# --- the system ---------------------------------------------------------------------------------


@value
class Generation:
    number: int
    date: str
    nixos_version: str
    kernel: str
    current: bool

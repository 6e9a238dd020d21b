"""A believable small server: eight services, some with several units, one unit failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from providers.catalogue import ServiceCatalogue, ServiceInfo
from providers.host import DiskUsage, HostMetrics
from providers.nixos.system import Generation
from providers.systemd import UnitError, UnitStatus, missing

GiB = 1024**3
MiB = 1024**2

_SERVICES = (
    ("nextcloud", "Nextcloud", "Files, calendar and contacts",
     ("phpfpm-nextcloud.service", "nginx.service", "redis-nextcloud.service"),
     ("/var/lib/nextcloud",), ("nextcloud",), ("cloud",)),
    ("forgejo", "Forgejo", "Git hosting",
     ("forgejo.service",), ("/var/lib/forgejo",), ("forgejo",), ("git",)),
    ("vaultwarden", "Vaultwarden", "Password manager",
     ("vaultwarden.service",), ("/var/lib/bitwarden_rs",), (), ("password",)),
    ("mailserver", "Mail", "Mail server (Postfix, Dovecot, Rspamd)",
     ("postfix.service", "dovecot2.service", "rspamd.service", "opendkim.service"),
     ("/var/vmail", "/var/sieve"), (), ("mail",)),
    ("jitsi", "Jitsi Meet", "Video calls",
     ("jitsi-videobridge2.service", "jicofo.service", "prosody.service"),
     ("/var/lib/jitsi-meet",), (), ("meet",)),
    ("pleroma", "Pleroma", "Fediverse social network",
     ("pleroma.service",), ("/var/lib/pleroma",), ("pleroma",), ("social",)),
    ("matrix", "Matrix (Synapse)", "Chat homeserver",
     ("matrix-synapse.service",), ("/var/lib/matrix-synapse",), ("matrix-synapse",),
     ("matrix",)),
    ("ocserv", "OpenConnect VPN", "VPN server",
     ("ocserv.service",), (), (), ("vpn",)),
)  # fmt: skip


def demo_catalogue() -> ServiceCatalogue:
    return ServiceCatalogue(
        [
            ServiceInfo(sid, name, desc, units, folders, dbs, subs, movable=bool(folders))
            for sid, name, desc, units, folders, dbs, subs in _SERVICES
        ]
    )


@dataclass
class DemoServiceManager:
    """Units in memory. ``fail_restart`` names units whose restart fails; ``down`` makes every
    call fail as if systemd did not answer."""

    units: dict[str, UnitStatus]
    step_seconds: float = 0.3
    fail_restart: set[str] = field(default_factory=set)
    down: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    journal: list[tuple[str, str]] = field(default_factory=list)  # (unit, line), oldest first

    async def status(self, units: Sequence[str]) -> dict[str, UnitStatus]:
        self._check("show", *units)
        return {unit: self.units.get(unit, missing(unit)) for unit in units}

    async def failed_units(self) -> list[str]:
        self._check("list-units", "--state=failed")
        return sorted(name for name, st in self.units.items() if st.active_state == "failed")

    async def start(self, unit: str) -> None:
        self._check("start", unit)
        await self._activate(unit)

    async def stop(self, unit: str) -> None:
        self._check("stop", unit)
        self._known(unit)
        self.units[unit] = _unit(unit, "deactivating", "stop-sigterm")
        await asyncio.sleep(self.step_seconds)
        self.units[unit] = _unit(unit, "inactive", "dead")
        self._log(unit, f"Stopped {unit}.")

    async def restart(self, unit: str) -> None:
        self._check("restart", unit)
        await self._activate(unit)

    async def logs(self, units: Sequence[str], lines: int) -> list[str]:
        self._check("journalctl", *units)
        wanted = set(units)
        return [line for unit, line in self.journal if unit in wanted][-lines:]

    async def _activate(self, unit: str) -> None:
        self._known(unit)
        self.units[unit] = _unit(unit, "activating", "start")
        await asyncio.sleep(self.step_seconds)
        if unit in self.fail_restart:
            self.units[unit] = _unit(unit, "failed", "failed")
            self._log(unit, f"{unit}: Main process exited, code=exited, status=1/FAILURE")
            raise UnitError(f"Job for {unit} failed because the control process exited.")
        self.units[unit] = _unit(unit, "active", "running", memory=64 * MiB)
        self._log(unit, f"Started {unit}.")

    def _known(self, unit: str) -> None:
        if unit not in self.units:
            raise UnitError(f"Unit {unit} not found.")

    def _log(self, unit: str, message: str) -> None:
        self.journal.append((unit, f"{_iso(datetime.now(UTC))} demo systemd[1]: {message}"))

    def _check(self, *call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise UnitError("Failed to connect to bus: No such file or directory")


def _iso(moment: datetime) -> str:
    """journalctl's short-iso time stamp."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S+0000")


def _unit(name: str, active: str, sub: str, memory: int | None = None) -> UnitStatus:
    return UnitStatus(name, "loaded", active, sub, datetime.now(UTC), memory)


@dataclass
class DemoHost:
    metrics_value: HostMetrics
    down: bool = False
    sizes: dict[str, int] = field(default_factory=dict)

    async def metrics(self) -> HostMetrics:
        if self.down:
            raise OSError("host metrics are unavailable")
        return self.metrics_value

    async def folder_sizes(self, folders: Sequence[str]) -> dict[str, int | None]:
        return {folder: self.sizes.get(folder) for folder in folders}


@dataclass
class DemoNixos:
    """Three generations; the newest is current. ``booted_older`` says the running kernel is
    the previous generation's, so a reboot is due."""

    generation_list: list[Generation]
    booted_older: bool = False

    async def generations(self) -> list[Generation]:
        return sorted(self.generation_list, key=lambda g: -g.number)

    async def reboot_needed(self) -> bool | None:
        return self.booted_older


def _demo_generations(now: datetime) -> list[Generation]:
    version = "25.05.20251101.abcdef0"
    return [
        Generation(number, f"{_iso(now - timedelta(days=ago))[:10]} 03:12:44", version,
                   "6.12.44" if number == 44 else "6.12.41", number == 44)
        for number, ago in ((41, 40), (43, 12), (44, 2))
    ]  # fmt: skip


@dataclass
class DemoServer:
    catalogue: ServiceCatalogue
    services: DemoServiceManager
    host: DemoHost
    nixos: DemoNixos

    @classmethod
    def create(cls, step_seconds: float = 0.3) -> DemoServer:
        catalogue = demo_catalogue()
        started = datetime.now(UTC) - timedelta(days=12, hours=3)
        units = {
            unit: UnitStatus(unit, "loaded", "active", "running", started, 150 * MiB)
            for unit in catalogue.all_units
        }
        units["jicofo.service"] = UnitStatus(
            "jicofo.service", "loaded", "failed", "failed", started + timedelta(days=11)
        )
        host = HostMetrics(
            hostname="demo",
            uptime_seconds=timedelta(days=12, hours=3).total_seconds(),
            load=(0.42, 0.61, 0.55),
            cores=2,
            memory_total_bytes=4 * GiB,
            memory_available_bytes=int(1.6 * GiB),
            disks=(DiskUsage("/", 38 * GiB, 24 * GiB), DiskUsage("/data", 100 * GiB, 71 * GiB)),
        )
        manager = DemoServiceManager(units, step_seconds)
        for number, unit in enumerate(catalogue.all_units):
            stamp = _iso(started + timedelta(seconds=number))
            manager.journal.append((unit, f"{stamp} demo systemd[1]: Started {unit}."))
        failed_at = _iso(started + timedelta(days=11))
        manager.journal.append((
            "jicofo.service",
            f"{failed_at} demo jicofo[2211]: SEVERE: cannot reach XMPP server <prosody> & gave up",
        ))  # fmt: skip
        folders = sorted({folder for info in catalogue.values() for folder in info.folders})
        sizes = {folder: (index + 1) * 3 * GiB // 2 for index, folder in enumerate(folders)}
        nixos = DemoNixos(_demo_generations(datetime.now(UTC)))
        return cls(catalogue, manager, DemoHost(host, sizes=sizes), nixos)

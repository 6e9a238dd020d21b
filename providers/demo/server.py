"""A believable small server: eight services, some with several units, one unit failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from providers.backup.memory import MemoryBackupEngine
from providers.dns.base import DnsRecord
from providers.dns.memory import MemoryDns
from providers.host.base import DiskUsage, HostMetrics, UnitError, UnitStatus, missing
from providers.host.catalogue import ServiceCatalogue, ServiceInfo
from providers.host.memory import MemoryPublicAddress
from providers.nixos.base import (
    UPGRADE_UNIT,
    DesiredState,
    Generation,
    RebuildPoll,
    RebuildRun,
    ServiceState,
    is_steward_unit,
)
from providers.nixos.memory import MemoryDesiredState
from providers.server.memory import MemoryServerProvider, demo_server_provider
from providers.storage.memory import MemoryBackupStorage, demo_storage

if TYPE_CHECKING:
    from providers.hardware.memory import MemoryArrays, MemoryDisks, MemoryUps

DEMO_DOMAIN = "example.org"
GiB = 1024**3
MiB = 1024**2

_SERVICES = (
    ("nextcloud", "Nextcloud", "Files, calendar and contacts",
     ("phpfpm-nextcloud.service", "redis-nextcloud.service"),
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


# Units a service needs but shares with others: shown with it, never stopped for it.
_SHARED = {"nextcloud": ("nginx.service",)}


def demo_catalogue() -> ServiceCatalogue:
    return ServiceCatalogue(
        [
            ServiceInfo(
                sid,
                name,
                desc,
                units,
                folders,
                dbs,
                subs,
                movable=bool(folders),
                shared_units=_SHARED.get(sid, ()),
            )
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
    reboots: int = 0

    async def reboot(self) -> None:
        self._check("reboot")
        self.reboots += 1

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
    devices: dict[str, DiskUsage] = field(default_factory=dict)
    grown: list[str] = field(default_factory=list)
    certs: dict[str, datetime | None] = field(default_factory=dict)

    async def metrics(self) -> HostMetrics:
        if self.down:
            raise OSError("host metrics are unavailable")
        return self.metrics_value

    async def folder_sizes(self, folders: Sequence[str]) -> dict[str, int | None]:
        return {folder: self.sizes.get(folder) for folder in folders}

    async def device_usage(self, device: str) -> DiskUsage | None:
        return self.devices.get(device)

    async def certificates(self, folder: str) -> dict[str, datetime | None]:
        return dict(self.certs)

    def fill_disk(self, percent: float) -> str:
        first, *rest = self.metrics_value.disks
        used = int(first.total_bytes * percent / 100)
        disks = (DiskUsage(first.mount, first.total_bytes, used), *rest)
        self.metrics_value = replace(self.metrics_value, disks=disks)
        return first.mount

    async def grow_filesystem(self, device: str) -> None:
        if self.down:
            raise OSError("host is unavailable")
        self.grown.append(device)


@dataclass
class DemoNixos:
    """Three generations; the newest is current. ``booted_older`` says the running kernel is
    the previous generation's, so a reboot is due."""

    generation_list: list[Generation]
    booted_older: bool = False

    async def generations(self) -> list[Generation]:
        return sorted(self.generation_list, key=lambda g: -g.number)

    def switch_to(self, number: int) -> None:
        self.generation_list = [
            replace(g, current=g.number == number) for g in self.generation_list
        ]

    def add(self, *, upgrade: bool) -> int:
        newest = max(self.generation_list, key=lambda g: g.number)
        current = next(g for g in self.generation_list if g.current)
        version = current.nixos_version
        if upgrade:
            version = version.replace("20251101", datetime.now(UTC).strftime("%Y%m%d"))
        number = newest.number + 1
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.generation_list.append(Generation(number, date, version, current.kernel, False))
        self.switch_to(number)
        return number

    async def reboot_needed(self) -> bool | None:
        return self.booted_older

    async def preview_upgrade(self, flake: str) -> list[str]:
        return [
            "linux: 6.12.44 → 6.12.47, +212.4 KiB",
            "nextcloud: 31.0.9 → 31.0.10",
            "openssl: 3.4.1 → 3.4.2",
        ]


def _demo_generations(now: datetime) -> list[Generation]:
    version = "25.05.20251101.abcdef0"
    return [
        Generation(number, f"{_iso(now - timedelta(days=ago))[:10]} 03:12:44", version,
                   "6.12.44" if number == 44 else "6.12.41", number == 44)
        for number, ago in ((41, 40), (43, 12), (44, 2))
    ]  # fmt: skip


@dataclass
class _DemoRun:
    invocation: str
    lines: list[str] = field(default_factory=list)
    done: bool = False
    ok: bool = False


@dataclass
class DemoRebuilds:
    """The steward oneshot units in memory. A switch builds a new generation from the desired
    state: the units of enabled services come up, those of disabled ones go away.
    ``fail_next`` makes the next run fail in the build with that message."""

    nixos: DemoNixos
    services: DemoServiceManager
    catalogue: ServiceCatalogue
    desired: MemoryDesiredState
    step_seconds: float = 0.3
    fail_next: str | None = None
    refuse_start: str | None = None  # systemctl start fails with this (polkit said no)
    runs: dict[str, list[_DemoRun]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def busy(self) -> str | None:
        for unit, runs in self.runs.items():
            if runs and not runs[-1].done:
                return unit
        return None

    async def prepare(self, unit: str) -> RebuildRun:
        if not is_steward_unit(unit):
            raise UnitError(f"{unit} is not one of Steward's rebuild units")
        runs = self.runs.get(unit, [])
        last = runs[-1] if runs else None
        cursor = f"{unit}:{len(runs)}:{len(last.lines) if last else 0}"
        if last is not None and not last.done:
            return RebuildRun(unit, last.invocation, last.invocation, cursor, True, True)
        return RebuildRun(unit, last.invocation if last else "", cursor=cursor)

    async def start(self, run: RebuildRun) -> RebuildRun:
        if run.started:
            return run
        if self.refuse_start is not None:
            raise UnitError(self.refuse_start)
        runs = self.runs.setdefault(run.unit, [])
        current = _DemoRun(f"{run.unit}#{len(runs) + 1}")
        runs.append(current)
        self.started.append(run.unit)
        task = asyncio.create_task(self._run(run.unit, current))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return replace(run, started=True)

    async def poll(self, run: RebuildRun) -> RebuildPoll:
        runs = self.runs.get(run.unit, [])
        if not run.run_id:
            newer = [r for r in runs if r.invocation != run.before_id]
            if not newer:
                return RebuildPoll(run, (), finished=False, succeeded=False)
            run = replace(run, run_id=newer[-1].invocation, cursor=f"{newer[-1].invocation}:0")
        current = next(r for r in runs if r.invocation == run.run_id)
        seen = int(run.cursor.rsplit(":", 1)[1]) if run.cursor.startswith(current.invocation) else 0
        done = current.done  # read before the lines, as the real adapter does
        lines = tuple(current.lines[seen:])
        run = replace(run, cursor=f"{current.invocation}:{seen + len(lines)}")
        return RebuildPoll(run, lines, finished=done, succeeded=done and current.ok)

    async def _run(self, unit: str, run: _DemoRun) -> None:
        step = self.step_seconds
        try:
            if unit.startswith("steward-rollback@"):
                target = int(unit.removeprefix("steward-rollback@").removesuffix(".service"))
                run.lines.append(f"switching profile to generation {target}")
                await asyncio.sleep(step)
                if all(g.number != target for g in self.nixos.generation_list):
                    run.lines.append(f"error: generation {target} does not exist")
                    return
                self.nixos.switch_to(target)
                run.lines.append("activating the configuration...")
                self._apply_units()
                run.ok = True
                return
            if unit == UPGRADE_UNIT:
                run.lines.append("unpacking channels...")
                await asyncio.sleep(step)
            run.lines.append("building the system configuration...")
            await asyncio.sleep(step)
            failure, self.fail_next = self.fail_next, None
            if failure is not None:
                run.lines.extend([
                    "error: builder for '/nix/store/demo-system.drv' failed with exit code 1;",
                    f"       > {failure}",
                ])  # fmt: skip
                return
            run.lines.append("activating the configuration...")
            await asyncio.sleep(step)
            self.nixos.add(upgrade=unit == UPGRADE_UNIT)
            self._apply_units()
            run.ok = True
        finally:
            run.lines.append("Finished." if run.ok else f"Failed to start {unit}.")
            run.done = True

    def _apply_units(self) -> None:
        for sid, info in self.catalogue.items():
            if sid not in self.desired.state.services:
                continue
            for unit in info.units:
                if self.desired.state.enabled(sid):
                    if unit not in self.services.units:
                        self.services.units[unit] = _unit(unit, "active", "running", 64 * MiB)
                elif not any(
                    unit in other.units and self.desired.state.enabled(oid)
                    for oid, other in self.catalogue.items()
                ):
                    self.services.units.pop(unit, None)


def _demo_dns() -> MemoryDns:
    """The zone as a half-done setup leaves it: the apex and two services right, the mail
    records missing, one address stale, and records of the owner's that are not Steward's."""
    ipv4, ipv6 = "203.0.113.10", "2001:db8:1234::1"
    records = [
        DnsRecord(DEMO_DOMAIN, "A", ipv4),
        DnsRecord(DEMO_DOMAIN, "AAAA", ipv6),
        DnsRecord(f"cloud.{DEMO_DOMAIN}", "A", ipv4),
        DnsRecord(f"git.{DEMO_DOMAIN}", "A", ipv4),
        DnsRecord(f"password.{DEMO_DOMAIN}", "A", "198.51.100.4"),
        DnsRecord(DEMO_DOMAIN, "TXT", "google-site-verification=abc123"),
        DnsRecord(f"blog.{DEMO_DOMAIN}", "CNAME", "owner.github.io"),
    ]
    return MemoryDns.with_zone(DEMO_DOMAIN, records)


@dataclass
class DemoServer:
    catalogue: ServiceCatalogue
    services: DemoServiceManager
    host: DemoHost
    nixos: DemoNixos
    desired: MemoryDesiredState
    rebuilds: DemoRebuilds
    cloud: MemoryServerProvider
    storage: MemoryBackupStorage
    dns: MemoryDns
    backups: MemoryBackupEngine
    domain: str = DEMO_DOMAIN
    # The home-server demo (STEWARD_DEMO=home): its own hardware, no cloud.
    home: bool = False
    disks: MemoryDisks | None = None
    arrays: MemoryArrays | None = None
    ups: MemoryUps | None = None
    public_ip: MemoryPublicAddress | None = None

    def data_root(self, folder: Path) -> Path:
        """A folder that stands for the demo's ``/`` in restores, holding each service's data
        as the demo backups see it."""
        if not folder.exists():
            for path, data in self.backups.files.items():
                target = folder / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return folder

    @classmethod
    def create(cls, step_seconds: float = 0.3, *, home: bool = False) -> DemoServer:
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
        # Everything runs but Pleroma, which is in the catalogue but not enabled.
        for unit in catalogue["pleroma"].units:
            del units[unit]
        desired = MemoryDesiredState(
            DesiredState({sid: ServiceState(sid != "pleroma") for sid in catalogue})
        )
        rebuilds = DemoRebuilds(nixos, manager, catalogue, desired, step_seconds)
        cloud = demo_server_provider(step_seconds)
        (volume,) = cloud.volume_list.values()
        devices = {volume.linux_device: DiskUsage("/data", 100 * GiB, 71 * GiB)}
        now = datetime.now(UTC)
        certs: dict[str, datetime | None] = {
            DEMO_DOMAIN: now + timedelta(days=61),
            f"cloud.{DEMO_DOMAIN}": now + timedelta(days=58),
        }
        demo_host = DemoHost(host, sizes=sizes, devices=devices, certs=certs)
        server = cls(
            catalogue, manager, demo_host, nixos, desired, rebuilds, cloud, demo_storage(),
            _demo_dns(), MemoryBackupEngine.demo(step_seconds),
        )  # fmt: skip
        if not home:
            return server
        from providers.demo.home import home_hardware  # noqa: PLC0415 - the home demo only

        disks, arrays, ups, public_ip = home_hardware()
        return replace(server, home=True, disks=disks, arrays=arrays, ups=ups, public_ip=public_ip)

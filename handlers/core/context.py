"""What a handler gets: the command, the caller's role, and the providers it may use."""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from handlers.core.messages import Command
from handlers.core.spec import Role
from providers.host.catalogue import ServiceCatalogue
from values import value

if TYPE_CHECKING:
    from handlers.core.fleet import Fleet
    from handlers.core.progress import Progress
    from handlers.core.records import AuditLog, DemoControls, Notes, Samples, Schedules
    from handlers.core.registry import Registry
    from providers.backup.base import BackupEngine, DatabaseDumps, DataJobs, SelfSnapshot
    from providers.dns.base import DnsProvider
    from providers.hardware.base import ArrayProbe, DiskProbe, UpsProbe
    from providers.host.base import HostProbe, PublicAddressProbe, ServiceManager
    from providers.nixos.base import DesiredStateStore, NixosSystem, Rebuilds
    from providers.server.base import ServerProvider
    from providers.storage.base import BackupStorage


class CommandError(Exception):
    """A domain failure with a short, safe answer (already escaped HTML)."""


@value
class SystemPolicy:
    """How rebuilds behave. ``keep_minutes`` None turns the Keep offer off."""

    keep_minutes: float | None = 10.0
    poll_seconds: float = 1.0
    rebuild_timeout: float = 4 * 3600.0
    # /upgrade builds the upgrade first and shows its closure diff (a flake only).
    preview_build: bool = False
    upgrade_flake: str | None = None
    snapshot_before_upgrade: bool = False
    # Root ssh keys from chat: "off" (root refuses them), "code" (each carries a TOTP code
    # that root checks) or "open" (the demo, where no root checks anything).
    root_keys: Literal["off", "code", "open"] = "off"


@value
class Site:
    """What the DNS records are made of. Addresses left unset come from the cloud provider."""

    domain: str | None = None
    zone: str | None = None  # the DNS zone, when it is not the domain itself
    ipv4: str | None = None
    ipv6: str | None = None
    dkim_file: Path | None = None
    dkim_selector: str = "selector"
    mail_service: str = "mailserver"  # the catalogue id whose being enabled means mail records
    acme_dir: str = "/var/lib/acme"  # NixOS's certificates, one folder per certificate
    # When the public address changes, apply the /dns fix diff without asking first.
    follow_ip: bool = False


@value
class Deps:
    """The providers and stores handlers may use. Only ``bot`` builds one."""

    host: HostProbe
    services: ServiceManager
    catalogue: ServiceCatalogue
    audit: AuditLog
    registry: Registry
    timezone: tzinfo
    nixos: NixosSystem
    desired: DesiredStateStore
    rebuilds: Rebuilds
    notes: Notes
    policy: SystemPolicy = field(default_factory=SystemPolicy)
    # None: not configured (one's own hardware, no B2); the commands say what turns them on.
    cloud: ServerProvider | None = None
    storage: BackupStorage | None = None
    dns: DnsProvider | None = None
    site: Site = field(default_factory=Site)
    backups: BackupEngine | None = None
    # With backups: a service's own data is backed up and restored through these, which run
    # in a root unit on a server.
    data_jobs: DataJobs | None = None
    # Steward's own snapshot (database, desired state, /etc/nixos, DKIM keys, catalogue).
    self_snapshot: SelfSnapshot | None = None
    dumps: DatabaseDumps | None = None  # with backups and STEWARD_POSTGRES_HOST
    schedules: Schedules | None = None  # only while `steward run` serves
    demo: DemoControls | None = None  # only on the demo server
    samples: Samples | None = None
    # One's own hardware; None where it is not there or not configured.
    disks: DiskProbe | None = None
    arrays: ArrayProbe | None = None
    ups: UpsProbe | None = None
    public_ip: PublicAddressProbe | None = None
    # This Steward's name and the others it has seen (several servers in one chat).
    fleet: Fleet | None = None


@value
class Context:
    command: Command
    role: Role
    deps: Deps
    progress: Progress
    now: datetime
    # The persisted job this run belongs to; None for read-only commands and previews.
    job_id: int | None = None

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.deps.timezone)

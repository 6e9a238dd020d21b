"""The composition root: the only place that names concrete adapters."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from bot.config import ConfigError, Settings, restic_environment
from bot.notifier import Notifier
from bot.storage.database import Database
from bot.storage.stores import (
    SqlAuditLog,
    SqlConfirmationStore,
    SqlJobStore,
    SqlKeyValue,
    SqlSamples,
)
from bot.transports.router import OutboxRouter
from handlers.catalog import build_registry
from handlers.core.access import AccessPolicy
from handlers.core.context import Deps, Site, SystemPolicy
from handlers.core.engine import Engine
from handlers.core.fleet import Fleet, Signature
from handlers.core.guard import Guard, TotpMode
from handlers.core.job_host import EngineSettings
from handlers.core.messages import ChatRef, Reply, esc
from handlers.core.spec import Role
from handlers.system import welcome_back
from providers.backup.datajobs import LocalDataJobs, UnitDataJobs, UnitSelfSnapshot
from providers.backup.restore import Restorer
from providers.host.catalogue import CatalogueError, ServiceCatalogue
from providers.nixos.base import DesiredStateError

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine, DatabaseDumps, DataJobs, SelfSnapshot
    from providers.backup.selfsnapshot import SelfSources
    from providers.demo import DemoServer
    from providers.dns.base import DnsProvider
    from providers.hardware.base import ArrayProbe, DiskProbe, UpsProbe
    from providers.host.base import HostProbe, PublicAddressProbe, ServiceManager
    from providers.nixos.base import NixosSystem, Rebuilds
    from providers.nixos.desired import DesiredStateFile
    from providers.server.base import ServerProvider
    from providers.storage.base import BackupStorage

log = logging.getLogger(__name__)
SWEEP_SECONDS = 15.0


@dataclass
class App:
    settings: Settings
    db: Database
    engine: Engine
    router: OutboxRouter
    kv: SqlKeyValue
    demo: DemoServer | None
    notifier: Notifier
    audit: SqlAuditLog

    async def start(self) -> None:
        """Re-attach to jobs a previous run left behind, then keep confirmations tidy."""
        count = await self.engine.jobs.reattach()
        if count:
            log.info("re-attached to %d unfinished jobs", count)
        try:
            back = await welcome_back(self.engine.deps, self.engine.clock())
            if back is not None:
                await self.router.send(back[0], back[1])
        except Exception:
            log.exception("could not report the end of a reboot")

    async def sweep_forever(self, seconds: float = SWEEP_SECONDS) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.engine.expire_confirmations()
            except Exception:
                log.exception("expiring confirmations failed")

    async def flush(self) -> None:
        """On a clean stop: the audit rows still queued reach the database."""
        await self.audit.flush()

    def close(self) -> None:
        self.db.dispose()


def build_app(
    settings: Settings,
    *,
    demo: bool = False,
    console_admin: bool = False,
    router: OutboxRouter | None = None,
) -> App:
    demo = bool(demo or settings.demo)
    # Check everything in the config before touching the database.
    registry = build_registry()
    names = {entry.spec.name for entry in registry}
    for variable, wanted in (("TWO_PERSON", settings.two_person), ("CONFIRM", settings.confirm)):
        unknown = sorted(wanted - names)
        if unknown:
            raise ConfigError(f"STEWARD_{variable}: unknown commands: {', '.join(unknown)}")
    server = _demo_server(settings) if demo else None
    machine = _machine(server)
    host, services = machine.host, machine.services
    catalogue = server.catalogue if server else _catalogue(settings)
    db = Database(settings.database)
    db.ensure_schema_apart()
    kv = SqlKeyValue(db)
    audit = SqlAuditLog(db)
    desired_path = settings.desired_state or settings.state_dir / "desired-state.json"
    backups = server.backups if server else _backups(settings)
    dumps = _dumps(settings) if not server else None
    data_jobs: DataJobs | None = None
    if backups is not None and settings.backup_units:
        data_jobs = UnitDataJobs(settings.work_dir / "jobs")
    elif backups is not None:
        root = server.data_root(settings.state_dir / "demo-root") if server else Path("/")
        work = settings.state_dir / "restore"
        restorer = Restorer(backups, services, work, root=root, dumps=dumps)
        data_jobs = LocalDataJobs(backups, restorer, dumps)
    hardware = (
        Hardware(server.disks, server.arrays, server.ups, server.public_ip)
        if server
        else _hardware(settings)
    )
    deps = Deps(
        host=host,
        services=services,
        catalogue=catalogue,
        audit=audit,
        registry=registry,
        timezone=_timezone(settings),
        nixos=machine.nixos,
        desired=server.desired if server else _desired(desired_path, catalogue),
        rebuilds=machine.rebuilds,
        notes=kv,
        policy=SystemPolicy(
            keep_minutes=settings.keep_minutes or None,
            poll_seconds=settings.rebuild_poll_seconds,
            preview_build=settings.preview_build,
            upgrade_flake=settings.upgrade_flake,
            snapshot_before_upgrade=settings.snapshot_before_upgrade,
            # The demo has no root to check a code: there a key is only a line in a file.
            root_keys="open" if server else ("code" if settings.root_keys_from_chat else "off"),
        ),
        cloud=(None if server.home else server.cloud) if server else _cloud(settings),
        storage=server.storage if server else _storage(settings),
        dns=server.dns if server else _dns(settings),
        backups=backups,
        data_jobs=data_jobs,
        self_snapshot=None if server else _self_snapshot(settings, backups, data_jobs),
        dumps=dumps,
        samples=SqlSamples(db),
        demo=server.host if server else None,
        site=Site(
            domain=settings.domain or (server.domain if server else None),
            zone=settings.dns_zone,
            ipv4=settings.public_ipv4,
            ipv6=settings.public_ipv6,
            dkim_file=settings.dkim_file,
            dkim_selector=settings.dkim_selector,
            acme_dir=settings.acme_dir,
            follow_ip=settings.dns_auto_follow_ip,
        ),
        disks=hardware.disks,
        arrays=hardware.arrays,
        ups=hardware.ups,
        public_ip=hardware.public_ip,
        fleet=_fleet(settings),
    )
    access = AccessPolicy.from_lists(
        settings.admins,
        settings.operators,
        settings.viewers,
        console_role=Role.ADMIN if console_admin else None,
        people=settings.people,
    )
    router = router or OutboxRouter()
    engine = Engine(
        deps=deps,
        access=access,
        confirmations=SqlConfirmationStore(db),
        jobs=SqlJobStore(db),
        outbox=router,
        settings=EngineSettings(
            confirm_ttl=settings.confirm_ttl,
            two_person=settings.two_person,
            confirm=settings.confirm,
        ),
        guard=build_guard(settings, db, kv),
    )
    notifier = Notifier(router, admin_chats(access), settings.steward_name)

    async def alert_admins(reply: Reply) -> None:
        await notifier.notify(reply)

    async def tell_admins(incident: str, summary: str) -> None:
        text = f"⚠️ Incident <code>{esc(incident)}</code>: {esc(summary)}. Details are in the log."
        await notifier.notify(Reply(text))

    engine.on_incident = tell_admins
    engine.on_alert = alert_admins
    return App(settings, db, engine, router, kv, server, notifier, audit)


class _Machine(NamedTuple):
    host: HostProbe
    services: ServiceManager
    nixos: NixosSystem
    rebuilds: Rebuilds


def _machine(server: DemoServer | None) -> _Machine:
    """The machine Steward looks after: the demo's, or this one. This one's providers are imported
    only here, so the demo does not hold them beside its fakes."""
    if server is not None:
        return _Machine(server.host, server.services, server.nixos, server.rebuilds)
    from providers.host.metrics import PsutilHost  # noqa: PLC0415
    from providers.host.systemd import SystemctlServiceManager  # noqa: PLC0415
    from providers.nixos.rebuild import SystemdRebuilds  # noqa: PLC0415
    from providers.nixos.system import NixosRebuildSystem  # noqa: PLC0415

    return _Machine(
        PsutilHost(), SystemctlServiceManager(), NixosRebuildSystem(), SystemdRebuilds()
    )


def _public_address() -> str | None:
    from providers.host.metrics import public_address  # noqa: PLC0415

    return public_address()


def _desired(path: Path, catalogue: ServiceCatalogue) -> DesiredStateFile:
    """The real desired state; on the first start, the services already running are recorded
    as enabled (nixos/desired-state.nix assumes the same while the file is missing)."""
    from providers.nixos.desired import DesiredStateFile, first_start  # noqa: PLC0415

    store = DesiredStateFile(path)
    running = [sid for sid in catalogue if catalogue[sid].already_running]
    try:
        if store.create_sync(first_start(running)):
            log.info("desired state: first start, recorded as enabled: %s", ", ".join(running))
    except (OSError, DesiredStateError) as exc:
        # /enable and /disable will say what is wrong; the bot still serves everything else.
        log.warning("desired state: could not record the first start in %s: %s", path, exc)
    return store


def build_guard(settings: Settings, db: Database, kv: SqlKeyValue) -> Guard:
    """Lock-down always; TOTP when its key is given. Deny by default: a setting that asks for
    codes, or admins who enrolled, with no key to check them, stop the start."""
    from bot.storage.totp_store import SqlTotpStore, enrolled_count  # noqa: PLC0415

    mode = TotpMode(settings.totp) if settings.totp else None
    if settings.totp_key is None:
        if mode not in (None, TotpMode.OFF):
            raise ConfigError(f"STEWARD_TOTP={mode}: needs STEWARD_TOTP_KEY_FILE")
        if mode is None and enrolled_count(db):
            raise ConfigError(
                "STEWARD_TOTP_KEY_FILE: needed, admins have enrolled a second factor "
                "(or set STEWARD_TOTP=off)"
            )
        return Guard(kv, None, mode)
    from bot.totp import SecretBox, TotpFactor  # noqa: PLC0415 - only with TOTP set up

    box = SecretBox.from_text(settings.totp_key.get_secret_value())
    return Guard(kv, TotpFactor(SqlTotpStore(db), box), mode)


def admin_chats(access: AccessPolicy) -> list[ChatRef]:
    """An admin's private chat: on Telegram its id is the user's id."""
    return [
        ChatRef("telegram", user_id)
        for user_id, role in access.members("telegram")
        if role is Role.ADMIN
    ]


def _fleet(settings: Settings) -> Fleet:
    name = settings.steward_name
    if settings.watch == name:
        raise ConfigError(f"STEWARD_WATCH: {name} is this Steward's own name; name another one")
    return Fleet(Signature(name, steward_version(), settings.fleet_heartbeat_seconds))


def steward_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("steward")
    except PackageNotFoundError:
        return "dev"


def _demo_server(settings: Settings) -> DemoServer:
    # The demo's in-memory fakes are imported only in demo mode.
    from providers.demo import DemoServer  # noqa: PLC0415

    return DemoServer.create(step_seconds=settings.demo_delay, home=settings.demo_home)


class Hardware(NamedTuple):
    disks: DiskProbe | None = None
    arrays: ArrayProbe | None = None
    ups: UpsProbe | None = None
    public_ip: PublicAddressProbe | None = None


def _hardware(settings: Settings) -> Hardware:
    """Disks and arrays on one's own hardware (a cloud VM has neither SMART nor RAID to see);
    the UPS and the public-address check wherever they are configured. Each probe is imported
    only when it is configured, as the cloud SDKs are."""
    found: dict[str, Any] = {}
    if settings.server_provider == "none" and settings.watch_hardware:
        from providers.hardware.arrays import HostArrays  # noqa: PLC0415
        from providers.hardware.disks import SmartctlDisks  # noqa: PLC0415

        if settings.health_dir is not None or shutil.which("smartctl"):
            found["disks"] = SmartctlDisks(recorded=settings.health_dir)
        found["arrays"] = HostArrays(settings.mdstat_path, recorded=settings.health_dir)
    if settings.ups:
        from providers.hardware.ups import NutUps  # noqa: PLC0415

        found["ups"] = NutUps(settings.ups)
    if settings.public_ip_url:
        from providers.host.public_ip import HttpPublicAddress  # noqa: PLC0415

        try:
            found["public_ip"] = HttpPublicAddress(settings.public_ip_url)
        except ValueError as exc:
            raise ConfigError(f"STEWARD_PUBLIC_IP_URL: {exc}") from None
    return Hardware(**found)


def _cloud(settings: Settings) -> ServerProvider | None:
    """The configured cloud, its SDK imported only now; None on one's own hardware."""
    if settings.server_provider == "digitalocean":
        return _digitalocean(settings)
    if settings.server_provider == "scaleway":
        return _scaleway(settings)
    if settings.server_provider == "ovh":
        return _ovh(settings)
    if settings.server_provider != "hetzner":
        return None
    if settings.hcloud_token is None:
        raise ConfigError("STEWARD_SERVER_PROVIDER=hetzner needs STEWARD_HCLOUD_TOKEN(_FILE)")
    from providers.server.hetzner import DEFAULT_API_URL, HetznerServerProvider  # noqa: PLC0415

    return HetznerServerProvider(
        settings.hcloud_token.get_secret_value(),
        server=settings.hcloud_server,
        public_ip=None if settings.hcloud_server else _public_address(),
        api_url=settings.hcloud_api_url or DEFAULT_API_URL,
    )


def _digitalocean(settings: Settings) -> ServerProvider:
    if settings.digitalocean_token is None:
        raise ConfigError(
            "STEWARD_SERVER_PROVIDER=digitalocean needs STEWARD_DIGITALOCEAN_TOKEN(_FILE)"
        )
    from providers.server.digitalocean import (  # noqa: PLC0415
        DEFAULT_API_URL,
        DigitalOceanServerProvider,
    )

    return DigitalOceanServerProvider(
        settings.digitalocean_token.get_secret_value(),
        droplet=settings.digitalocean_droplet,
        public_ip=None if settings.digitalocean_droplet else _public_address(),
        api_url=settings.digitalocean_api_url or DEFAULT_API_URL,
    )


def _scaleway(settings: Settings) -> ServerProvider:
    access, secret = settings.scaleway_access_key, settings.scaleway_secret_key
    if access is None or secret is None or not settings.scaleway_project_id:
        raise ConfigError(
            "STEWARD_SERVER_PROVIDER=scaleway needs STEWARD_SCALEWAY_ACCESS_KEY(_FILE), "
            "STEWARD_SCALEWAY_SECRET_KEY(_FILE) and STEWARD_SCALEWAY_PROJECT_ID"
        )
    from providers.server.scaleway import DEFAULT_API_URL, ScalewayServerProvider  # noqa: PLC0415

    try:
        return ScalewayServerProvider(
            access.get_secret_value(),
            secret.get_secret_value(),
            project_id=settings.scaleway_project_id,
            zone=settings.scaleway_zone or "fr-par-1",
            server=settings.scaleway_server,
            public_ip=None if settings.scaleway_server else _public_address(),
            api_url=settings.scaleway_api_url or DEFAULT_API_URL,
        )
    except ValueError as exc:  # names the setting, never its value
        raise ConfigError(str(exc)) from None


def _ovh(settings: Settings) -> ServerProvider:
    keys = (
        settings.ovh_application_key,
        settings.ovh_application_secret,
        settings.ovh_consumer_key,
    )
    if None in keys or not settings.ovh_project_id:
        raise ConfigError(
            "STEWARD_SERVER_PROVIDER=ovh needs STEWARD_OVH_APPLICATION_KEY, "
            "STEWARD_OVH_APPLICATION_SECRET, STEWARD_OVH_CONSUMER_KEY (or their _FILE) and "
            "STEWARD_OVH_PROJECT_ID"
        )
    from providers.server.ovh import OvhServerProvider  # noqa: PLC0415

    app_key, app_secret, consumer_key = (k.get_secret_value() for k in keys if k is not None)
    return OvhServerProvider(
        application_key=app_key,
        application_secret=app_secret,
        consumer_key=consumer_key,
        project_id=settings.ovh_project_id,
        endpoint=settings.ovh_endpoint,
        instance=settings.ovh_instance,
        public_ip=None if settings.ovh_instance else _public_address(),
    )


def _dns(settings: Settings) -> DnsProvider | None:
    if settings.dns_provider == "cloudflare":
        if settings.cloudflare_token is None:
            raise ConfigError(
                "STEWARD_DNS_PROVIDER=cloudflare needs STEWARD_CLOUDFLARE_TOKEN(_FILE)"
            )
        from providers.dns.cloudflare import CloudflareDns  # noqa: PLC0415

        token = settings.cloudflare_token.get_secret_value()
        return CloudflareDns(token, base_url=settings.cloudflare_api_url)
    if settings.dns_provider == "rfc2136":
        if settings.rfc2136_server is None or settings.rfc2136_tsig_file is None:
            raise ConfigError(
                "STEWARD_DNS_PROVIDER=rfc2136 needs STEWARD_RFC2136_SERVER and "
                "STEWARD_RFC2136_TSIG_FILE"
            )
        from providers.dns.rfc2136 import Rfc2136Dns  # noqa: PLC0415

        return Rfc2136Dns(settings.rfc2136_server, settings.rfc2136_tsig_file)
    return None


def _backups(settings: Settings, cache_dir: Path | None = None) -> BackupEngine | None:
    if settings.restic_repository is None:
        return None
    if settings.restic_password_file is None:
        raise ConfigError("STEWARD_RESTIC_REPOSITORY needs STEWARD_RESTIC_PASSWORD_FILE")
    from providers.backup.restic import ResticBackupEngine, ResticSettings  # noqa: PLC0415

    keys = restic_environment(settings)
    return ResticBackupEngine(
        ResticSettings(
            repository=settings.restic_repository,
            password_file=settings.restic_password_file,
            aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
            aws_default_region=keys.get("AWS_DEFAULT_REGION"),
            cache_dir=cache_dir or settings.state_dir / "restic-cache",
            known_hosts_file=settings.restic_known_hosts_file,
            ssh_key_file=settings.restic_ssh_key_file,
        )
    )


def self_sources(settings: Settings) -> SelfSources:
    """What Steward's own snapshot holds, from the configuration alone."""
    from providers.backup.selfsnapshot import SelfSources  # noqa: PLC0415

    return SelfSources(
        database_url=settings.database,
        desired_state=settings.desired_state or settings.state_dir / "desired-state.json",
        catalogue=settings.catalogue,
        nixos_dir=settings.nixos_config_dir,
        dkim_dir=settings.dkim_file.parent if settings.dkim_file is not None else None,
        postgres_user=settings.postgres_user,
    )


def _self_snapshot(
    settings: Settings, backups: BackupEngine | None, data_jobs: DataJobs | None
) -> SelfSnapshot | None:
    if backups is None or settings.demo:
        return None
    if isinstance(data_jobs, UnitDataJobs):
        return UnitSelfSnapshot(data_jobs)
    from providers.backup.selfsnapshot import LocalSelfSnapshot  # noqa: PLC0415

    return LocalSelfSnapshot(backups, self_sources(settings), settings.state_dir)


def _dumps(settings: Settings) -> DatabaseDumps | None:
    if settings.postgres_host is None:
        return None
    from providers.backup.pgdump import PostgresDumps, PostgresSettings  # noqa: PLC0415

    postgres = PostgresSettings(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password_file=settings.postgres_password_file,
    )
    return PostgresDumps(postgres, settings.work_dir / "dumps")


def _storage(settings: Settings) -> BackupStorage | None:
    if settings.b2_key_id is None or settings.b2_key is None or settings.b2_bucket is None:
        return None
    from providers.storage.b2 import B2BackupStorage  # noqa: PLC0415

    return B2BackupStorage(
        settings.b2_key_id.get_secret_value(),
        settings.b2_key.get_secret_value(),
        settings.b2_bucket,
    )


def _catalogue(settings: Settings) -> ServiceCatalogue:
    if settings.catalogue is None:
        log.warning("STEWARD_CATALOGUE is not set: no services are known")
        return ServiceCatalogue([])
    try:
        return ServiceCatalogue.load(settings.catalogue)
    except CatalogueError as exc:
        raise ConfigError(f"STEWARD_CATALOGUE: {exc}") from None


def _timezone(settings: Settings) -> tzinfo:
    if settings.timezone:
        return ZoneInfo(settings.timezone)
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else ZoneInfo("UTC")

"""The Scaleway adapter of ServerProvider, on the official ``scaleway`` SDK.

One zone of one project: the Instance API (``scaleway.instance.v1``) for the instance, its
power and its price, and the Block Storage API (``scaleway.block.v1alpha1``) for volumes and
snapshots. Block Storage because instances today boot from ``sbs_volume`` disks: the Instance
API resizes and snapshots only the legacy ``b_ssd``/``l_ssd`` volumes, while the Block Storage
API grows a volume (``PATCH size``, grow only) and snapshots it. The SDK is imported only when
this adapter is built; its calls are synchronous and run in worker threads.

Retry policy (the one I/O seam, ``providers.server.scaleway_transport``): at most 3 tries; a 429 is
retried after its ``Retry-After`` (up to 30 s), 5xx answers and timeouts only for GET, with
backoff of 1, 2 s; nothing else is retried. Each failure is one ``ServerError`` sentence.
Long operations wait by polling, every ``poll_interval`` seconds, at most ``action_timeout``:
- power: the SDK has no task endpoint, so the instance is read until it leaves ``starting``/
  ``stopping``; a state other than the wanted one means the action failed;
- snapshots until ``available`` or ``error``; a resize until the volume is no longer
  ``resizing`` and has the new size.

Prices, as Scaleway publishes them (EUR, VAT excluded): the instance's ``monthly_price`` from
the Instance API's product catalogue (``GET /products/servers``); volumes and snapshots from
the Block Storage volume types' ``pricing`` and ``snapshot_pricing`` per GB-hour, times the
730 hours Scaleway bills a month at most. Scaleway has no traffic allowance (None), no backup
schedule of its own (False) and one protection flag, against deletion.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from providers.server.base import (
    PowerAction,
    Price,
    ServerError,
    ServerInfo,
    Snapshot,
    SnapshotCostEstimate,
    Volume,
    check_new_volume_size,
    check_power_action,
    check_volume_size,
    choose_this_server,
    found_or_missing,
    holding_address,
    server_error,
    settle,
    snapshot_cost,
)
from providers.server.scaleway_transport import ScalewayApiError, ScalewayTransport, through

DEFAULT_API_URL = "https://api.scaleway.com"
HOURS_PER_MONTH = Decimal(730)  # Scaleway bills a month at 730 hours at most
DEFAULT_VOLUME_TYPE = "sbs_5k"  # new volumes' class; the price of volume_price()
GB = 1000**3
PRICING_TTL_SECONDS = 3600.0  # Scaleway sizes are bytes, in decimal GB
CITIES = {"fr-par": "Paris", "nl-ams": "Amsterdam", "pl-waw": "Warsaw", "it-mil": "Milan"}
_STATUS = {"stopped": "off", "stopped in place": "off", "stopped_in_place": "off"}
_ACTIONS = {"reset": ("reboot", "running"), "poweroff": ("poweroff", "off")}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ACCESS_KEY = re.compile(r"^SCW[0-9A-Z]{17}$")
_ZONE = re.compile(r"^[a-z]{2}-[a-z]{3}-[0-9]$")
_T = TypeVar("_T")


class ScalewayServerProvider:
    """``server`` is this instance's id or name (STEWARD_SCALEWAY_SERVER); without it the
    instance is the one whose public IPv4 is ``public_ip``. A malformed key, project or zone
    is a ValueError naming the setting, never echoing its value."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        project_id: str,
        zone: str = "fr-par-1",
        server: str | None = None,
        public_ip: str | None = None,
        api_url: str = DEFAULT_API_URL,
        poll_interval: float = 2.0,
        action_timeout: float = 600.0,
        transport: ScalewayTransport | None = None,
    ) -> None:
        _check_settings(access_key, secret_key, project_id, zone)
        # Only a configured Scaleway pays for the SDK.
        from scaleway import Client  # noqa: PLC0415
        from scaleway.block.v1alpha1 import BlockV1Alpha1API  # noqa: PLC0415
        from scaleway.instance.v1 import InstanceV1API  # noqa: PLC0415

        client = Client(
            access_key=access_key,
            secret_key=secret_key,
            api_url=api_url.rstrip("/"),
            default_project_id=project_id,
            default_zone=zone,
            default_region=zone.rsplit("-", 1)[0],
        )
        seam = transport or ScalewayTransport()
        self._instance = through(InstanceV1API, client, seam)
        self._block = through(BlockV1Alpha1API, client, seam)
        self._project, self._zone = project_id, zone
        self._server_ref, self._public_ip = server, public_ip
        self._poll, self._action_timeout = poll_interval, action_timeout
        self._this_id: str | None = None
        self._prices: dict[str, tuple[float, Any]] = {}

    # -- the Protocol ---------------------------------------------------------------------------

    async def this_server(self) -> ServerInfo:
        return await self._run(lambda: self._info(self._this()))

    async def server(self, name_or_id: str) -> ServerInfo:
        return await self._run(lambda: self._info(self._find_server(name_or_id)))

    async def volumes(self) -> list[Volume]:
        def call() -> list[Volume]:
            # Root disks are block volumes too; like Hetzner's, the list shows the others.
            servers = self._instance.list_servers_all(project=self._project)
            roots = {root.id for s in servers if (root := s.volumes.get("0")) is not None}
            found = self._block.list_volumes_all(project_id=self._project)
            return [self._volume(v) for v in found if v.id not in roots]

        return await self._run(call)

    async def snapshots(self) -> list[Snapshot]:
        def call() -> list[Snapshot]:
            found = [self._snapshot(s) for s in self._all_snapshots()]
            return sorted(found, key=lambda s: (s.created, s.id), reverse=True)

        return await self._run(call)

    async def create_snapshot(self, description: str) -> Snapshot:
        def call() -> Snapshot:
            root = _root_volume_id(self._this())
            made = self._block.create_snapshot(
                volume_id=root, name=description, project_id=self._project
            )
            done = self._settle(
                lambda: self._block.get_snapshot(snapshot_id=made.id),
                lambda s: str(s.status) not in {"creating", "unknown_status"},
                "snapshot",
            )
            if str(done.status) == "error":
                # A failed snapshot is of no use and is billed for: it goes at once.
                self._block.delete_snapshot(snapshot_id=made.id)
                raise ServerError("Scaleway reports that the snapshot failed.", "action_failed")
            return self._snapshot(done)

        return await self._run(call)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        missing = f"There is no snapshot {snapshot_id}."
        if not _UUID.match(snapshot_id):
            raise ServerError(missing, "not_found")

        def call() -> None:
            self._resolve(lambda: self._block.get_snapshot(snapshot_id=snapshot_id), missing)
            self._block.delete_snapshot(snapshot_id=snapshot_id)

        await self._run(call)

    async def snapshot_cost_estimate(self) -> SnapshotCostEstimate:
        def call() -> SnapshotCostEstimate:
            per_gb = self._per_gb_month(snapshot=True)
            stored = [_gb(s.size) for s in self._all_snapshots()]
            return snapshot_cost(per_gb, stored, self._disk_gb(self._this()))

        return await self._run(call)

    async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
        def call() -> Volume:
            found = self._find_volume(id_or_name)
            check_new_volume_size(self._volume(found), new_size_gb)
            self._block.update_volume(volume_id=found.id, size=new_size_gb * GB)
            done = self._settle(
                lambda: self._block.get_volume(volume_id=found.id),
                lambda v: str(v.status) != "resizing",
                "volume resize",
            )
            if done.size != new_size_gb * GB:
                raise ServerError(
                    "Scaleway reports that the volume resize failed.", "action_failed"
                )
            return self._volume(done)

        return await self._run(call)

    async def volume_price(self, size_gb: int) -> Price:
        check_volume_size(size_gb)
        return await self._run(lambda: self._per_gb_month().times(size_gb))

    async def power(self, server: str, action: PowerAction) -> None:
        check_power_action(action)
        command, wanted = _ACTIONS.get(action, ("poweron", "running"))

        def call() -> None:
            found = self._find_server(server)
            self._instance.server_action(server_id=found.id, action=command)
            done = self._settle(
                lambda: self._instance.get_server(server_id=found.id).server,
                lambda s: str(s.state) not in {"starting", "stopping"},
                action,
            )
            if _status(done) != wanted:
                raise ServerError(f"Scaleway reports that the {action} failed.", "action_failed")

        await self._run(call)

    # -- running and waiting --------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(self._translated, call)

    @staticmethod
    def _translated(call: Callable[[], _T]) -> _T:
        try:
            return call()
        except ScalewayApiError as failure:
            raise server_error(failure.code) from None

    def _settle(self, fetch: Callable[[], _T], done: Callable[[_T], bool], what: str) -> _T:
        return settle(
            fetch,
            done,
            what=what,
            provider="Scaleway",
            timeout=self._action_timeout,
            interval=self._poll,
        )

    # -- lookups ----------------------------------------------------------------------------------

    def _this(self) -> Any:
        if self._this_id is not None:
            return self._instance.get_server(server_id=self._this_id).server
        found = choose_this_server(
            self._server_ref,
            self._public_ip,
            by_reference=self._find_server,
            by_address=self._server_with_ip,
            setting="STEWARD_SCALEWAY_SERVER",
        )
        self._this_id = found.id
        return found

    def _server_with_ip(self, address: str) -> Any:
        return holding_address(
            self._instance.list_servers_all(project=self._project),
            address,
            lambda server: [str(ip.address) for ip in server.public_ips],
            f"No instance in this Scaleway project and zone has the address {address}; "
            "set STEWARD_SCALEWAY_SERVER to its id or name.",
        )

    def _find_server(self, name_or_id: str) -> Any:
        missing = f"There is no server {name_or_id!r} in this Scaleway project."
        if _UUID.match(name_or_id):
            return self._resolve(
                lambda: self._instance.get_server(server_id=name_or_id).server, missing
            )
        # The API's name filter matches parts of names: keep the exact one.
        listed = self._instance.list_servers_all(project=self._project, name=name_or_id)
        return self._resolve(lambda: _exact(listed, name_or_id), missing)

    def _find_volume(self, id_or_name: str) -> Any:
        missing = f"There is no volume {id_or_name!r} in this Scaleway project."
        if _UUID.match(id_or_name):
            return self._resolve(lambda: self._block.get_volume(volume_id=id_or_name), missing)
        listed = self._block.list_volumes_all(project_id=self._project, name=id_or_name)
        return self._resolve(lambda: _exact(listed, id_or_name), missing)

    def _all_snapshots(self) -> list[Any]:
        return [
            s
            for s in self._block.list_snapshots_all(project_id=self._project)
            if str(s.status) not in {"deleting", "deleted"}
        ]

    @staticmethod
    def _resolve(lookup: Callable[[], _T | None], missing: str) -> _T:
        return found_or_missing(lookup, missing, ScalewayApiError)

    # -- facts and prices -------------------------------------------------------------------------

    def _info(self, server: Any) -> ServerInfo:
        stype = self._server_types().get(server.commercial_type)
        return ServerInfo(
            id=server.id,
            name=server.name,
            status=_status(server),
            server_type=server.commercial_type,
            cores=int(stype.ncpus) if stype else 0,
            memory_gb=stype.ram / 1024**3 if stype else 0.0,
            disk_gb=self._disk_gb(server),
            location=server.zone,
            city=CITIES.get(str(server.zone).rsplit("-", 1)[0], ""),
            ipv4=_address(server, "inet"),
            ipv6=_address(server, "inet6"),
            traffic_used_bytes=None,
            traffic_included_bytes=None,
            price_monthly=_monthly(stype),
            backups_enabled=False,
            delete_protection=bool(server.protected),
            rebuild_protection=False,
        )

    def _cached(self, name: str, load: Callable[[], _T]) -> _T:
        """Prices change rarely: each catalogue is read at most once an hour."""
        now = time.monotonic()
        kept = self._prices.get(name)
        if kept is None or now - kept[0] > PRICING_TTL_SECONDS:
            kept = self._prices[name] = (now, load())
        found: _T = kept[1]
        return found

    def _server_types(self) -> dict[str, Any]:
        return self._cached("servers", self._load_server_types)

    def _load_server_types(self) -> dict[str, Any]:
        """The zone's product catalogue, every page of it (it is keyed by type, not a list)."""
        types: dict[str, Any] = {}
        for page in range(1, 11):
            answer = self._instance.list_servers_types(per_page=100, page=page)
            types |= answer.servers
            if not answer.servers or len(types) >= (answer.total_count or 0):
                break
        return types

    def _disk_gb(self, server: Any) -> int:
        root = _root_volume_id(server)
        return int(_gb(self._block.get_volume(volume_id=root).size))

    def _per_gb_month(self, *, snapshot: bool = False, kind: str = DEFAULT_VOLUME_TYPE) -> Price:
        for vtype in self._cached("volumes", self._block.list_volume_types_all):
            money = vtype.snapshot_pricing if snapshot else vtype.pricing
            if vtype.type_ == kind and money is not None:
                per_hour = Decimal(int(money.units)) + Decimal(money.nanos) / 10**9
                return Price(per_hour * HOURS_PER_MONTH, money.currency_code)
        raise ServerError(f"Scaleway lists no price for {kind} storage here.", "service_error")

    def _volume(self, volume: Any) -> Volume:
        size = int(_gb(volume.size))
        per_gb = self._per_gb_month(kind=volume.type_)
        attached = [r.product_resource_id for r in volume.references]
        return Volume(
            id=volume.id,
            name=volume.name,
            size_gb=size,
            linux_device=f"/dev/disk/by-id/scsi-0SCW_sbs_volume-{volume.id}",
            server_id=attached[0] if attached else None,
            price_monthly=per_gb.times(size),
        )

    def _snapshot(self, snapshot: Any) -> Snapshot:
        per_gb = self._per_gb_month(snapshot=True)
        ready = str(snapshot.status) == "available"
        size = float(_gb(snapshot.size)) if ready else None
        cost = per_gb.times(_gb(snapshot.size)) if ready else None
        return Snapshot(
            id=snapshot.id,
            description=snapshot.name,
            created=snapshot.created_at or datetime.now(UTC),
            size_gb=size,
            monthly_cost=cost,
        )


def _check_settings(access_key: str, secret_key: str, project_id: str, zone: str) -> None:
    if not _ACCESS_KEY.match(access_key):
        raise ValueError("STEWARD_SCALEWAY_ACCESS_KEY is not a Scaleway access key (SCW...)")
    if not _UUID.match(secret_key):
        raise ValueError("STEWARD_SCALEWAY_SECRET_KEY is not a Scaleway secret key (a UUID)")
    if not _UUID.match(project_id):
        raise ValueError("STEWARD_SCALEWAY_PROJECT_ID is not a project id (a UUID)")
    if not _ZONE.match(zone):
        raise ValueError("STEWARD_SCALEWAY_ZONE is not a zone such as fr-par-1")


def _exact(listed: list[Any], name: str) -> Any | None:
    return next((item for item in listed if item.name == name), None)


def _root_volume_id(server: Any) -> str:
    root = server.volumes.get("0")
    if root is None:
        raise ServerError("This instance has no root volume.", "not_found")
    return str(root.id)


def _status(server: Any) -> str:
    state = str(server.state)
    return _STATUS.get(state, state)


def _address(server: Any, family: str) -> str | None:
    """The public IPv4, or the routed IPv6 network (``/64``) of the instance."""
    for ip in server.public_ips:
        if str(ip.family) == family:
            if family == "inet":
                return str(ip.address)
            return str(ipaddress.ip_network(f"{ip.address}/{ip.netmask}", strict=False))
    return None


def _monthly(stype: Any) -> Price | None:
    if stype is None or stype.monthly_price is None:
        return None
    # The catalogue's JSON number, kept as written (str, never through binary float maths).
    return Price(Decimal(str(stype.monthly_price)), "EUR")


def _gb(size_bytes: int | None) -> Decimal:
    return Decimal(size_bytes or 0) / GB

"""An in-memory cloud server with failure injection, for demo mode and handler tests.

It keeps the rules of the real adapter (volumes only grow, snapshots cost per GB-month,
writes need a read-write token) and speaks the same sentences on failure.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

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
    server_error,
    snapshot_cost,
)

_POWER_RESULT = {"poweron": "running", "poweroff": "off", "reset": "running"}


def demo_server(server_id: str = "4711", name: str = "steward-demo") -> ServerInfo:
    return ServerInfo(
        id=server_id,
        name=name,
        status="running",
        server_type="cx22",
        cores=2,
        memory_gb=4.0,
        disk_gb=40,
        location="fsn1",
        city="Falkenstein",
        ipv4="203.0.113.10",
        ipv6="2001:db8:1234::/64",
        traffic_used_bytes=123 * 1000**3,
        traffic_included_bytes=20 * 1000**4,
        price_monthly=Price(Decimal("4.5101"), "EUR"),
        backups_enabled=False,
        delete_protection=True,
        rebuild_protection=True,
    )


@dataclass
class MemoryServerProvider:
    """Failure injection: ``down`` (nothing answers), ``failure`` (every call fails with that
    provider error code, e.g. ``rate_limit_exceeded``), ``read_only`` (writes are forbidden),
    ``fail_actions`` (long operations end in error). ``calls`` records what was asked."""

    servers: dict[str, ServerInfo] = field(default_factory=lambda: {"4711": demo_server()})
    this_server_id: str = "4711"
    volume_list: dict[str, Volume] = field(default_factory=dict)
    snapshot_list: dict[str, Snapshot] = field(default_factory=dict)
    image_price_per_gb: Decimal = Decimal("0.0143")
    volume_price_per_gb: Decimal = Decimal("0.0571")
    currency: str = "EUR"
    step_seconds: float = 0.0
    down: bool = False
    failure: str | None = None
    read_only: bool = False
    fail_actions: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(9001))

    def add_volume(self, name: str, size_gb: int, server_id: str | None = None) -> Volume:
        volume_id = str(next(self._ids))
        volume = Volume(
            id=volume_id,
            name=name,
            size_gb=size_gb,
            linux_device=f"/dev/disk/by-id/scsi-0HC_Volume_{volume_id}",
            server_id=server_id if server_id is not None else self.this_server_id,
            price_monthly=self._volume_price(size_gb),
        )
        self.volume_list[volume_id] = volume
        return volume

    def add_snapshot(self, description: str, size_gb: float | None, created: datetime) -> Snapshot:
        snapshot = Snapshot(
            str(next(self._ids)), description, created, size_gb, self._snapshot_cost(size_gb)
        )
        self.snapshot_list[snapshot.id] = snapshot
        return snapshot

    # -- the Protocol --------------------------------------------------------------------

    async def this_server(self) -> ServerInfo:
        self._check("this_server")
        return self.servers[self.this_server_id]

    async def server(self, name_or_id: str) -> ServerInfo:
        self._check("server", name_or_id)
        return self._find_server(name_or_id)

    async def volumes(self) -> list[Volume]:
        self._check("volumes")
        return sorted(self.volume_list.values(), key=lambda volume: int(volume.id))

    async def snapshots(self) -> list[Snapshot]:
        self._check("snapshots")
        return sorted(
            self.snapshot_list.values(), key=lambda s: (s.created, int(s.id)), reverse=True
        )

    async def create_snapshot(self, description: str) -> Snapshot:
        self._check("create_snapshot", description, write=True)
        await self._action()
        disk = self.servers[self.this_server_id].disk_gb
        return self.add_snapshot(description, round(disk * 0.3, 2), datetime.now(UTC))

    async def delete_snapshot(self, snapshot_id: str) -> None:
        self._check("delete_snapshot", snapshot_id, write=True)
        if snapshot_id not in self.snapshot_list:
            raise ServerError(f"There is no snapshot {snapshot_id}.", "not_found")
        del self.snapshot_list[snapshot_id]

    async def snapshot_cost_estimate(self) -> SnapshotCostEstimate:
        self._check("snapshot_cost_estimate")
        sizes = [Decimal(str(s.size_gb or 0)) for s in self.snapshot_list.values()]
        per_gb = Price(self.image_price_per_gb, self.currency)
        return snapshot_cost(per_gb, sizes, self.servers[self.this_server_id].disk_gb)

    async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
        self._check("resize_volume", id_or_name, str(new_size_gb))
        volume = self._find_volume(id_or_name)
        check_new_volume_size(volume, new_size_gb)
        self._check_write()
        await self._action()
        grown = replace(volume, size_gb=new_size_gb, price_monthly=self._volume_price(new_size_gb))
        self.volume_list[volume.id] = grown
        return grown

    async def volume_price(self, size_gb: int) -> Price:
        self._check("volume_price", str(size_gb))
        check_volume_size(size_gb)
        return self._volume_price(size_gb)

    async def power(self, server: str, action: PowerAction) -> None:
        self._check("power", server, action)
        check_power_action(action)
        target = self._find_server(server)
        self._check_write()
        await self._action()
        self.servers[target.id] = replace(target, status=_POWER_RESULT[action])

    # -- helpers ------------------------------------------------------------------------

    def _find_server(self, name_or_id: str) -> ServerInfo:
        for info in self.servers.values():
            if name_or_id in (info.name, info.id):
                return info
        raise ServerError(f"There is no server {name_or_id!r} in this project.", "not_found")

    def _find_volume(self, id_or_name: str) -> Volume:
        for volume in self.volume_list.values():
            if id_or_name in (volume.name, volume.id):
                return volume
        raise ServerError(f"There is no volume {id_or_name!r} in this project.", "not_found")

    def _volume_price(self, size_gb: int) -> Price:
        return Price(Decimal(size_gb) * self.volume_price_per_gb, self.currency)

    def _snapshot_cost(self, size_gb: float | None) -> Price | None:
        if size_gb is None:
            return None
        return Price(Decimal(str(size_gb)) * self.image_price_per_gb, self.currency)

    async def _action(self) -> None:
        await asyncio.sleep(self.step_seconds)
        if self.fail_actions:
            raise ServerError(
                "The cloud provider reported that the action failed.", "action_failed"
            )

    def _check(self, *call: str, write: bool = False) -> None:
        self.calls.append(call)
        if self.down:
            raise server_error("unreachable")
        if self.failure is not None:
            raise server_error(self.failure)
        if write:
            self._check_write()

    def _check_write(self) -> None:
        if self.read_only:
            raise server_error("forbidden")


def demo_server_provider(step_seconds: float = 0.5) -> MemoryServerProvider:
    """This server with a data volume and two snapshots, its actions taking a moment."""
    provider = MemoryServerProvider(step_seconds=step_seconds)
    provider.add_volume("steward-data", 50)
    now = datetime.now(UTC)
    provider.add_snapshot("before nixos 25.05 upgrade", 3.2, now - timedelta(days=12))
    provider.add_snapshot("weekly", 3.4, now - timedelta(days=2))
    return provider

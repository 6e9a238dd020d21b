"""The Hetzner Cloud adapter of ServerProvider, on the official ``hcloud`` client.

``hcloud`` is imported only when this adapter is built, so a bot without Hetzner never pays
for it. Its calls are synchronous and run in worker threads (``asyncio.to_thread``).

Retry policy: the client's own, kept as it is. It retries network timeouts, 502/504 and the
codes ``conflict``, ``rate_limit_exceeded``, ``bad_gateway`` and ``timeout`` up to 5 times,
with exponential backoff (jitter, capped at 60 s). Nothing else is retried: an error becomes
one ``ServerError`` sentence. Long operations (snapshot, resize, power) wait for the Hetzner
action to reach ``success`` or ``error``, at most ``action_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

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
    snapshot_cost,
)

if TYPE_CHECKING:
    from hcloud import Client
    from hcloud.actions import BoundAction
    from hcloud.images import BoundImage
    from hcloud.servers import BoundServer
    from hcloud.volumes import BoundVolume

DEFAULT_API_URL = "https://api.hetzner.cloud/v1"
PRICING_TTL_SECONDS = 3600.0
_T = TypeVar("_T")


class HetznerServerProvider:
    """``server`` is this server's id or name (STEWARD_HCLOUD_SERVER); without it the server
    is the one whose public IPv4 (or IPv6 network) holds ``public_ip``."""

    def __init__(
        self,
        token: str,
        *,
        server: str | None = None,
        public_ip: str | None = None,
        api_url: str = DEFAULT_API_URL,
        poll_interval: float = 1.0,
        action_timeout: float = 600.0,
        request_timeout: float = 30.0,
    ) -> None:
        from hcloud import Client  # noqa: PLC0415 - only a configured Hetzner pays for hcloud

        self._client: Client = Client(
            token=token,
            api_endpoint=api_url,
            application_name="steward",
            poll_interval=poll_interval,
            timeout=request_timeout,
        )
        self._server_ref = server
        self._public_ip = public_ip
        self._action_polls = max(1, math.ceil(action_timeout / poll_interval))
        self._action_timeout = action_timeout
        self._this_id: int | None = None
        self._pricing: tuple[float, dict[str, Any]] | None = None

    # -- the Protocol ---------------------------------------------------------------------------

    async def this_server(self) -> ServerInfo:
        return await self._run(lambda: self._info(self._this()))

    async def server(self, name_or_id: str) -> ServerInfo:
        return await self._run(lambda: self._info(self._find_server(name_or_id)))

    async def volumes(self) -> list[Volume]:
        def call() -> list[Volume]:
            per_gb = self._price_per_gb("volume")
            return [_volume(v, per_gb) for v in self._client.volumes.get_all()]

        return await self._run(call)

    async def snapshots(self) -> list[Snapshot]:
        def call() -> list[Snapshot]:
            per_gb = self._price_per_gb("image")
            found = [_snapshot(i, per_gb) for i in self._client.images.get_all(type=["snapshot"])]
            return sorted(found, key=lambda s: (s.created, s.id), reverse=True)

        return await self._run(call)

    async def create_snapshot(self, description: str) -> Snapshot:
        def call() -> Snapshot:
            made = self._client.servers.create_image(
                self._this(), description=description, type="snapshot"
            )
            self._wait(made.action, "snapshot")
            image = self._client.images.get_by_id(_known(made.image.id))
            return _snapshot(image, self._price_per_gb("image"))

        return await self._run(call)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        if not snapshot_id.isdigit():
            raise ServerError(f"There is no snapshot {snapshot_id}.", "not_found")

        def call() -> None:
            image = self._resolve(
                lambda: self._client.images.get_by_id(int(snapshot_id)),
                f"There is no snapshot {snapshot_id}.",
            )
            if image.type != "snapshot":
                raise ServerError(f"Image {snapshot_id} is not a snapshot.", "invalid_input")
            self._client.images.delete(image)

        await self._run(call)

    async def snapshot_cost_estimate(self) -> SnapshotCostEstimate:
        def call() -> SnapshotCostEstimate:
            images = self._client.images.get_all(type=["snapshot"])
            stored = [Decimal(str(i.image_size or 0)) for i in images]
            return snapshot_cost(self._price_per_gb("image"), stored, self._disk_gb(self._this()))

        return await self._run(call)

    async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
        def call() -> Volume:
            bound = self._find_volume(id_or_name)
            per_gb = self._price_per_gb("volume")
            check_new_volume_size(_volume(bound, per_gb), new_size_gb)
            self._wait(self._client.volumes.resize(bound, new_size_gb), "volume resize")
            return _volume(self._client.volumes.get_by_id(_known(bound.id)), per_gb)

        return await self._run(call)

    async def volume_price(self, size_gb: int) -> Price:
        check_volume_size(size_gb)
        return await self._run(lambda: self._price_per_gb("volume").times(size_gb))

    async def power(self, server: str, action: PowerAction) -> None:
        check_power_action(action)

        def call() -> None:
            bound = self._find_server(server)
            servers = self._client.servers
            start = {"poweron": servers.power_on, "poweroff": servers.power_off}
            self._wait(start.get(action, servers.reset)(bound), action)

        await self._run(call)

    # -- the one I/O seam -----------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(self._translated, call)

    def _translated(self, call: Callable[[], _T]) -> _T:
        """Run ``call`` and turn whatever hcloud or the network raises into a ServerError."""
        import requests  # noqa: PLC0415 - comes with hcloud
        from hcloud import APIException  # noqa: PLC0415

        try:
            return call()
        except APIException as exc:
            code = exc.code if isinstance(exc.code, str) else _http_code(exc.code)
            raise server_error(code) from None
        except requests.Timeout:
            raise server_error("timeout") from None
        except requests.RequestException:
            raise server_error("unreachable") from None

    def _wait(self, action: BoundAction, what: str) -> None:
        from hcloud.actions import (  # noqa: PLC0415
            ActionFailedException,
            ActionTimeoutException,
        )

        try:
            action.wait_until_finished(max_retries=self._action_polls)
        except ActionFailedException:
            raise ServerError(f"Hetzner reports that the {what} failed.", "action_failed") from None
        except ActionTimeoutException:
            raise ServerError(
                f"Hetzner did not finish the {what} within {self._action_timeout:g} s; "
                "it may still be running.",
                "action_timeout",
            ) from None

    # -- lookups ----------------------------------------------------------------------------------

    def _this(self) -> BoundServer:
        if self._this_id is not None:
            return self._client.servers.get_by_id(self._this_id)
        found = choose_this_server(
            self._server_ref,
            self._public_ip,
            by_reference=self._find_server,
            by_address=self._server_with_ip,
            setting="STEWARD_HCLOUD_SERVER",
        )
        self._this_id = found.id
        return found

    def _server_with_ip(self, address: str) -> BoundServer:
        return holding_address(
            self._client.servers.get_all(),
            address,
            _public_networks,
            f"No server in this Hetzner project has the address {address}; "
            "set STEWARD_HCLOUD_SERVER to its id or name.",
        )

    def _find_server(self, name_or_id: str) -> BoundServer:
        missing = f"There is no server {name_or_id!r} in this Hetzner project."
        if name_or_id.isdigit():
            return self._resolve(lambda: self._client.servers.get_by_id(int(name_or_id)), missing)
        return self._resolve(lambda: self._client.servers.get_by_name(name_or_id), missing)

    def _find_volume(self, id_or_name: str) -> BoundVolume:
        missing = f"There is no volume {id_or_name!r} in this Hetzner project."
        if id_or_name.isdigit():
            return self._resolve(lambda: self._client.volumes.get_by_id(int(id_or_name)), missing)
        return self._resolve(lambda: self._client.volumes.get_by_name(id_or_name), missing)

    @staticmethod
    def _resolve(lookup: Callable[[], _T | None], missing: str) -> _T:
        from hcloud import APIException  # noqa: PLC0415

        return found_or_missing(lookup, missing, APIException)

    # -- prices -----------------------------------------------------------------------------------

    def _pricing_table(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._pricing is None or now - self._pricing[0] > PRICING_TTL_SECONDS:
            table: dict[str, Any] = self._client.request("GET", "/pricing")["pricing"]
            self._pricing = (now, table)
        return self._pricing[1]

    def _price_per_gb(self, kind: str) -> Price:
        """``kind`` is ``image`` (snapshots) or ``volume``: both are billed per GB-month."""
        table = self._pricing_table()
        gross = table[kind]["price_per_gb_month"]["gross"]
        return Price(Decimal(gross), table["currency"])

    def _info(self, server: BoundServer) -> ServerInfo:
        stype = server.server_type
        location = server.location
        net = server.public_net
        protection = server.protection or {"delete": False, "rebuild": False}
        return ServerInfo(
            id=str(_known(server.id)),
            name=server.name or str(server.id),
            status=server.status or "unknown",
            server_type=stype.name or "" if stype else "",
            cores=stype.cores or 0 if stype else 0,
            memory_gb=float(stype.memory or 0) if stype else 0.0,
            disk_gb=self._disk_gb(server),
            location=location.name or "" if location else "",
            city=location.city or "" if location else "",
            ipv4=net.ipv4.ip if net and net.ipv4 else None,
            ipv6=net.ipv6.ip if net and net.ipv6 else None,
            traffic_used_bytes=server.outgoing_traffic,
            traffic_included_bytes=server.included_traffic,
            price_monthly=self._server_price(server),
            backups_enabled=server.backup_window is not None,
            delete_protection=bool(protection["delete"]),
            rebuild_protection=bool(protection["rebuild"]),
        )

    def _server_price(self, server: BoundServer) -> Price | None:
        """The server type's monthly gross price at the server's location, if listed."""
        if server.server_type is None or server.location is None:
            return None
        for entry in server.server_type.prices or []:
            if entry.get("location") == server.location.name:
                gross = entry["price_monthly"]["gross"]
                return Price(Decimal(gross), self._pricing_table()["currency"])
        return None

    @staticmethod
    def _disk_gb(server: BoundServer) -> int:
        if server.primary_disk_size:
            return int(server.primary_disk_size)
        return int(server.server_type.disk or 0) if server.server_type else 0


def _volume(volume: BoundVolume, per_gb: Price) -> Volume:
    size = int(volume.size or 0)
    return Volume(
        id=str(_known(volume.id)),
        name=volume.name or str(volume.id),
        size_gb=size,
        linux_device=volume.linux_device or "",
        server_id=str(volume.server.id) if volume.server is not None else None,
        price_monthly=per_gb.times(size),
    )


def _snapshot(image: BoundImage, per_gb: Price) -> Snapshot:
    size = image.image_size
    cost = None if size is None else per_gb.times(Decimal(str(size)))
    return Snapshot(
        id=str(_known(image.id)),
        description=image.description or "",
        created=image.created or datetime.now(UTC),
        size_gb=size,
        monthly_cost=cost,
    )


def _public_networks(server: BoundServer) -> list[str]:
    """The public IPv4 address and the routed IPv6 network."""
    net = server.public_net
    ipv4 = net.ipv4.ip if net and net.ipv4 else None
    ipv6 = net.ipv6.ip if net and net.ipv6 else None
    return [n for n in (ipv4, ipv6) if n]


def _known(resource_id: int | None) -> int:
    if resource_id is None:
        raise ServerError("Hetzner answered without the resource's id.", "service_error")
    return resource_id


def _http_code(status: int) -> str:
    """Answers without Hetzner's JSON envelope (a proxy's 502, an HTML 503) by status."""
    if status in {401, 403, 404, 423, 429}:
        return {401: "unauthorized", 403: "forbidden", 404: "not_found", 423: "locked"}.get(
            status, "rate_limit_exceeded"
        )
    return "service_error" if status >= 500 else "invalid_input"

"""The OVHcloud adapter of ServerProvider: a Public Cloud instance, on the official ``ovh`` SDK.

Everything goes through ``/cloud/project/{project}/...`` (STEWARD_OVH_PROJECT_ID). ``ovh`` is
imported only when this adapter is built; its calls are synchronous and run in worker threads.
The SDK signs each request with the application secret and consumer key, after reading the
API's clock from ``/auth/time`` once. It knows endpoints only by name (ovh-eu, ovh-ca, ovh-us);
a URL (tests, a proxy) is set on the client after it is built, which reaches into its private
``_endpoint``: that is why ``ovh`` is pinned to 1.2.x.

Retry policy (the SDK has none): one seam, ``_call``. A 429 is retried for every method, after
its ``Retry-After`` (capped at ``max_retry_wait``); the API refused it before doing anything.
5xx answers and timeouts are retried for GET only: a POST that timed out may have run, and a
second snapshot or reboot is worse than an error. At most ``retries`` (3) more tries, with
exponential backoff from ``backoff`` seconds. Nothing else is retried: a dropped connection,
an unknown key or a 4xx becomes one ``ServerError`` sentence at once.

Long operations have no action objects at OVHcloud: the adapter polls the resource until it
settles, at most ``operation_timeout`` seconds. A snapshot is done when its image is
``active``; an image in ``error`` (or ``killed``) is deleted again, as it is useless. A volume
is grown when it is back to ``available`` or ``in-use`` at the new size (``error_extending``
failed). A power action is done when the instance is ``ACTIVE`` (reset: a hard reboot, and
poweron) or ``SHUTOFF`` (poweroff); ``ERROR`` means it failed.

What OVHcloud does not give: traffic counters (Public Cloud traffic is not metered in most
regions), delete or rebuild protection, and a routed IPv6 network (one address, shown as /128).
VPS (``/vps``) is left out: it has no volumes to grow and its snapshot is a single paid option
slot, not a list, so most of the protocol would be refusals.
"""

from __future__ import annotations

import asyncio
import re
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
    holding_address,
    server_error,
    settle,
    snapshot_cost,
)
from providers.server.ovh_catalogue import SNAPSHOT_PLAN, SUBSIDIARY, VOLUME_PLAN, PriceCatalogue
from providers.server.ovh_errors import classify

if TYPE_CHECKING:
    from ovh import Client

JSON = dict[str, Any]
_T = TypeVar("_T")
CATALOGUE_TTL_SECONDS = 3600.0
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_STATUS = {"ACTIVE": "running", "SHUTOFF": "off", "STOPPED": "off", "HARD_REBOOT": "rebooting",
           "REBOOT": "rebooting", "BUILD": "starting", "BUILDING": "starting"}  # fmt: skip
_POWER = {"reset": ("reboot", "ACTIVE"), "poweroff": ("stop", "SHUTOFF"),
          "poweron": ("start", "ACTIVE")}  # fmt: skip
# Region names start with the datacentre's code; the API names no city.
_CITIES = {"GRA": "Gravelines", "SBG": "Strasbourg", "RBX": "Roubaix", "BHS": "Beauharnois",
           "WAW": "Warsaw", "UK": "London", "DE": "Frankfurt", "SGP": "Singapore",
           "SYD": "Sydney", "EU-WEST-PAR": "Paris", "EU-SOUTH-MIL": "Milan",
           "US-EAST-VA": "Vint Hill", "US-WEST-OR": "Hillsboro",
           "CA-EAST-TOR": "Toronto"}  # fmt: skip


class OvhServerProvider:
    """``instance`` is this instance's id or name (STEWARD_OVH_INSTANCE); without it the
    instance is the one with the public address ``public_ip``."""

    def __init__(
        self,
        *,
        application_key: str,
        application_secret: str,
        consumer_key: str,
        project_id: str,
        endpoint: str = "ovh-eu",
        instance: str | None = None,
        public_ip: str | None = None,
        poll_interval: float = 2.0,
        operation_timeout: float = 900.0,
        request_timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        import ovh  # noqa: PLC0415 - only a configured OVHcloud pays for the SDK

        named = endpoint if endpoint in ovh.client.ENDPOINTS else "ovh-eu"
        self._client: Client = ovh.Client(
            endpoint=named,
            application_key=application_key,
            application_secret=application_secret,
            consumer_key=consumer_key,
            timeout=request_timeout,
        )
        if named != endpoint:
            self._client._endpoint = endpoint.rstrip("/")  # private: see the module docstring
        self._subsidiary = SUBSIDIARY.get(named, "FR")
        self._base = f"/cloud/project/{project_id}"
        self._instance_ref = instance
        self._public_ip = public_ip
        self._poll = poll_interval
        self._timeout = operation_timeout
        self._retries, self._backoff, self._max_wait = retries, backoff, max_retry_wait
        self._this_id: str | None = None
        self._catalogue: tuple[float, PriceCatalogue] | None = None

    # -- the Protocol ---------------------------------------------------------------------------

    async def this_server(self) -> ServerInfo:
        return await self._run(lambda: self._info(self._instance(self._this())))

    async def server(self, name_or_id: str) -> ServerInfo:
        return await self._run(lambda: self._info(self._find_instance(name_or_id)))

    async def volumes(self) -> list[Volume]:
        return await self._run(lambda: [self._volume(v) for v in self._get("/volume")])

    async def snapshots(self) -> list[Snapshot]:
        return await self._run(self._snapshot_list)

    async def create_snapshot(self, description: str) -> Snapshot:
        def call() -> Snapshot:
            before = {image["id"] for image in self._get("/snapshot")}
            data = {"snapshotName": description}
            self._call("POST", f"{self._base}/instance/{self._this()}/snapshot", data)
            return self._snapshot(self._await_image(before, description))

        return await self._run(call)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        missing = ServerError(f"There is no snapshot {snapshot_id}.", "not_found")
        if not _UUID.fullmatch(snapshot_id):
            raise missing

        def call() -> None:
            self._resolve(lambda: self._get(f"/snapshot/{snapshot_id}"), missing)
            self._call("DELETE", f"{self._base}/snapshot/{snapshot_id}")

        await self._run(call)

    async def snapshot_cost_estimate(self) -> SnapshotCostEstimate:
        def call() -> SnapshotCostEstimate:
            per_gb = self._prices().per_gb_month(SNAPSHOT_PLAN, SNAPSHOT_PLAN)
            stored = [Decimal(str(i.get("size") or 0)) for i in self._get("/snapshot")]
            disk = Decimal(self._instance(self._this())["flavor"]["disk"])
            return snapshot_cost(per_gb, stored, disk)

        return await self._run(call)

    async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
        def call() -> Volume:
            found = self._find_volume(id_or_name)
            check_new_volume_size(self._volume(found), new_size_gb)
            path = f"{self._base}/volume/{found['id']}"
            self._call("POST", f"{path}/upsize", {"size": new_size_gb})
            return self._volume(self._await_volume(found["id"], new_size_gb))

        return await self._run(call)

    async def volume_price(self, size_gb: int) -> Price:
        check_volume_size(size_gb)
        return await self._run(
            lambda: self._prices().per_gb_month(VOLUME_PLAN, VOLUME_PLAN).times(size_gb)
        )

    async def power(self, server: str, action: PowerAction) -> None:
        check_power_action(action)
        verb, settled = _POWER[action]

        def call() -> None:
            target = self._find_instance(server)["id"]
            data = {"type": "hard"} if verb == "reboot" else None
            self._call("POST", f"{self._base}/instance/{target}/{verb}", data)
            self._await_instance(target, settled, action)

        await self._run(call)

    # -- the one I/O seam -----------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(call)

    def _get(self, path: str) -> Any:
        return self._call("GET", self._base + path)

    def _call(self, method: str, path: str, data: JSON | None = None, auth: bool = True) -> Any:
        """One request, retried by the policy in the module docstring; any failure becomes a
        ServerError."""
        from ovh.exceptions import APIError  # noqa: PLC0415

        for attempt in range(self._retries + 1):
            try:
                return self._client.call(method, path, data, need_auth=auth)
            except APIError as exc:
                code, wait = classify(exc, method)
                if wait is None or attempt == self._retries:
                    raise server_error(code) from None
            time.sleep(min(self._max_wait, wait if wait >= 0 else self._backoff * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    # -- waiting for operations -----------------------------------------------------------------

    def _settle(self, read: Callable[[], _T], done: Callable[[_T], bool], what: str) -> _T:
        return settle(
            read, done, what=what, provider="OVHcloud", timeout=self._timeout, interval=self._poll
        )

    def _await_image(self, before: set[str], name: str) -> JSON:
        def made() -> JSON | None:
            new = [i for i in self._get("/snapshot") if i["id"] not in before and i["name"] == name]
            return new[0] if new else None

        image = self._settle(made, lambda i: i is not None and i["status"] != "saving", "snapshot")
        assert image is not None  # noqa: S101 - _settle returned it as done
        if image["status"] in {"error", "killed"}:
            self._call("DELETE", f"{self._base}/snapshot/{image['id']}")  # it costs and is useless
            raise _failed("snapshot")
        return image

    def _await_volume(self, volume_id: str, size: int) -> JSON:
        def done(volume: JSON) -> bool:
            return volume["status"].startswith("error") or (
                volume["status"] in {"available", "in-use"} and volume["size"] == size
            )

        volume: JSON = self._settle(
            lambda: self._get(f"/volume/{volume_id}"), done, "volume resize"
        )
        if volume["status"].startswith("error"):
            raise _failed("volume resize")
        return volume

    def _await_instance(self, instance_id: str, settled: str, what: str) -> None:
        def done(instance: JSON) -> bool:
            return instance["status"] in {settled, "ERROR"}

        instance = self._settle(lambda: self._instance(instance_id), done, what)
        if instance["status"] == "ERROR":
            raise _failed(what)

    # -- lookups ----------------------------------------------------------------------------------

    def _this(self) -> str:
        if self._this_id is not None:
            return self._this_id
        found = choose_this_server(
            self._instance_ref,
            self._public_ip,
            by_reference=self._find_instance,
            by_address=self._instance_with_ip,
            setting="STEWARD_OVH_INSTANCE",
        )
        self._this_id = str(found["id"])
        return self._this_id

    def _instance(self, instance_id: str) -> JSON:
        found: JSON = self._get(f"/instance/{instance_id}")
        return found

    def _instance_with_ip(self, address: str) -> JSON:
        found = holding_address(
            self._get("/instance"),
            address,
            lambda instance: [
                a["ip"] for a in instance.get("ipAddresses", []) if a.get("type") == "public"
            ],
            f"No instance in this OVHcloud project has the address {address}; "
            "set STEWARD_OVH_INSTANCE to its id or name.",
        )
        return self._instance(found["id"])

    def _find_instance(self, name_or_id: str) -> JSON:
        missing = ServerError(
            f"There is no server {name_or_id!r} in this OVHcloud project.", "not_found"
        )
        if _UUID.fullmatch(name_or_id):
            return self._resolve(lambda: self._instance(name_or_id), missing)
        named = [i for i in self._get("/instance") if i.get("name") == name_or_id]
        if not named:
            raise missing
        return self._instance(named[0]["id"])

    def _find_volume(self, id_or_name: str) -> JSON:
        for volume in self._get("/volume"):
            if id_or_name in (volume["id"], volume.get("name")):
                found: JSON = volume
                return found
        missing = f"There is no volume {id_or_name!r} in this OVHcloud project."
        raise ServerError(missing, "not_found")

    @staticmethod
    def _resolve(lookup: Callable[[], _T], missing: ServerError) -> _T:
        try:
            return lookup()
        except ServerError as exc:
            if exc.code == "not_found":
                raise missing from None
            raise

    # -- facts and prices -------------------------------------------------------------------------

    def _prices(self) -> PriceCatalogue:
        now = time.monotonic()
        if self._catalogue is None or now - self._catalogue[0] > CATALOGUE_TTL_SECONDS:
            path = f"/order/catalog/public/cloud?ovhSubsidiary={self._subsidiary}"
            self._catalogue = (now, PriceCatalogue(self._call("GET", path, auth=False)))
        return self._catalogue[1]

    def _info(self, instance: JSON) -> ServerInfo:
        flavor = instance.get("flavor") or {}
        region = str(instance.get("region") or "")
        return ServerInfo(
            id=str(instance["id"]),
            name=str(instance.get("name") or instance["id"]),
            status=_STATUS.get(instance.get("status", ""), str(instance.get("status")).lower()),
            server_type=str(flavor.get("name", "")),
            cores=int(flavor.get("vcpus", 0)),
            memory_gb=int(flavor.get("ram", 0)) / 1000,  # the API gives MB
            disk_gb=int(flavor.get("disk", 0)),
            location=region,
            city=_city(region),
            ipv4=_address(instance, 4),
            ipv6=_ipv6(instance),
            traffic_used_bytes=None,
            traffic_included_bytes=None,
            price_monthly=self._instance_price(instance, flavor),
            backups_enabled=False,
            delete_protection=False,
            rebuild_protection=False,
        )

    def _instance_price(self, instance: JSON, flavor: JSON) -> Price | None:
        """The monthly plan if the instance is billed monthly, else 730 hours of the hourly."""
        codes = flavor.get("planCodes") or {}
        monthly_billing = (instance.get("monthlyBilling") or {}).get("status") == "ok"
        prices = self._prices()
        first = codes.get("monthly") if monthly_billing else codes.get("hourly")
        return prices.monthly(first) or prices.monthly(codes.get("hourly"))

    def _volume(self, volume: JSON) -> Volume:
        per_gb = self._prices().per_gb_month(volume.get("planCode"), VOLUME_PLAN)
        size = int(volume["size"])
        attached = volume.get("attachedTo") or []
        return Volume(
            id=str(volume["id"]),
            name=str(volume.get("name") or volume["id"]),
            size_gb=size,
            # virtio disks carry the first 20 characters of the volume id as their serial.
            linux_device=f"/dev/disk/by-id/virtio-{str(volume['id'])[:20]}",
            server_id=str(attached[0]) if attached else None,
            price_monthly=per_gb.times(size),
        )

    def _snapshot_list(self) -> list[Snapshot]:
        found = [self._snapshot(i) for i in self._get("/snapshot")]
        return sorted(found, key=lambda s: (s.created, s.id), reverse=True)

    def _snapshot(self, image: JSON) -> Snapshot:
        per_gb = self._prices().per_gb_month(image.get("planCode"), SNAPSHOT_PLAN)
        ready = image.get("status") == "active" and image.get("size") is not None
        size = float(image["size"]) if ready else None
        cost = None if size is None else per_gb.times(Decimal(str(size)))
        created = image.get("creationDate")
        return Snapshot(
            id=str(image["id"]),
            description=str(image.get("name") or ""),
            created=datetime.fromisoformat(created) if created else datetime.now(UTC),
            size_gb=size,
            monthly_cost=cost,
        )


def _failed(what: str) -> ServerError:
    return ServerError(f"OVHcloud reports that the {what} failed.", "action_failed")


def _city(region: str) -> str:
    for prefix in sorted(_CITIES, key=len, reverse=True):
        if region.upper().startswith(prefix):
            return _CITIES[prefix]
    return region


def _address(instance: JSON, version: int) -> str | None:
    for address in instance.get("ipAddresses", []):
        if address.get("type") == "public" and address.get("version") == version:
            return str(address["ip"])
    return None


def _ipv6(instance: JSON) -> str | None:
    address = _address(instance, 6)
    return None if address is None else f"{address}/128"

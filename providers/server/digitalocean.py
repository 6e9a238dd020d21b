"""The DigitalOcean adapter of ServerProvider, on the official ``pydo`` client.

``pydo`` (and azure-core under it) is imported only when this adapter is built, so a bot
without DigitalOcean never pays for it. Its calls are synchronous and run in worker threads.

Retry policy (``providers/server/digitalocean_http.py``, in place of azure-core's): at most 4 tries
of one request. A 429 is tried again for every method, after the ``Retry-After`` seconds it asks
for, unless that is longer than 20 s: then the rate limit is reported at once. A 5xx answer or a
read timeout is tried again only for GET and DELETE, after 0.5, 1, 2 s: a POST may have started an
action before its answer was lost. A refused or dropped connection is not retried. An error becomes
one ``ServerError`` sentence. Long operations (snapshot, resize, power) poll the DigitalOcean action
until it is ``completed`` or ``errored`` (after 0.1, 0.2, 0.4 ... s, then
every ``poll_interval``), at most ``action_timeout`` seconds.

Prices: the droplet's size carries its monthly price (USD). Volumes and snapshots are billed per
GB-month at the rates DigitalOcean publishes (below); the API has no price list for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

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
    snapshot_cost,
)

if TYPE_CHECKING:
    from pydo import Client

DEFAULT_API_URL = "https://api.digitalocean.com"
# https://www.digitalocean.com/pricing/volumes and /pricing/snapshots (USD, per GB-month).
VOLUME_PER_GB_MONTH = Price(Decimal("0.10"), "USD")
SNAPSHOT_PER_GB_MONTH = Price(Decimal("0.06"), "USD")
MAX_VOLUME_GB = 16 * 1024  # 16 TiB, DigitalOcean's largest volume
POWER = {"reset": "power_cycle", "poweroff": "power_off", "poweron": "power_on"}
STATUS = {"active": "running", "new": "starting", "archive": "archived"}
JSON = Mapping[str, Any]
_T = TypeVar("_T")


class DigitalOceanServerProvider:
    """``droplet`` is this droplet's id or name (STEWARD_DIGITALOCEAN_DROPLET); without it the
    droplet is the one whose public IPv4 or IPv6 address is ``public_ip``."""

    def __init__(
        self,
        token: str,
        *,
        droplet: str | None = None,
        public_ip: str | None = None,
        api_url: str = DEFAULT_API_URL,
        poll_interval: float = 2.0,
        action_timeout: float = 600.0,
        request_timeout: float = 30.0,
        retry_backoff: float = 0.5,
        page_size: int = 200,
    ) -> None:
        from pydo import Client  # noqa: PLC0415 - only a configured DigitalOcean pays for pydo

        from providers.server.digitalocean_http import TransientRetryPolicy  # noqa: PLC0415

        self._client: Client = Client(
            token,
            endpoint=api_url.rstrip("/"),
            retry_policy=TransientRetryPolicy(backoff=retry_backoff),
            connection_timeout=min(10.0, request_timeout),
            read_timeout=request_timeout,
            user_agent="steward",
        )
        # azure-core refuses a bearer token over plain HTTP; only the loopback test API is.
        loopback = urlsplit(api_url).hostname in {"127.0.0.1", "::1", "localhost"}
        self._options: dict[str, Any] = {"enforce_https": False} if loopback else {}
        self._droplet_ref = droplet
        self._public_ip = public_ip
        self._poll_interval = poll_interval
        self._action_timeout = action_timeout
        self._page_size = page_size
        self._this_id: int | None = None

    # -- the Protocol ---------------------------------------------------------------------------

    async def this_server(self) -> ServerInfo:
        return await self._run(lambda: _info(self._this()))

    async def server(self, name_or_id: str) -> ServerInfo:
        return await self._run(lambda: _info(self._find_droplet(name_or_id)))

    async def volumes(self) -> list[Volume]:
        return await self._run(lambda: [_volume(v) for v in self._all_volumes()])

    async def snapshots(self) -> list[Snapshot]:
        def call() -> list[Snapshot]:
            found = self._all(self._client.snapshots.list, "snapshots", resource_type="droplet")
            return _newest_first([_snapshot(s) for s in found])

        return await self._run(call)

    async def create_snapshot(self, description: str) -> Snapshot:
        def call() -> Snapshot:
            droplet = self._this()
            self._act_on_droplet(droplet, {"type": "snapshot", "name": description}, "snapshot")
            # The action does not name the snapshot it made: find it among the droplet's own.
            mine = self._all(self._client.droplets.list_snapshots, "snapshots", droplet["id"])
            made = _newest_first([_snapshot(s) for s in mine if s.get("name") == description])
            if not made:
                raise ServerError(
                    "DigitalOcean finished the snapshot but does not list it yet; "
                    "/snapshots shows it soon.",
                    "service_error",
                )
            return made[0]

        return await self._run(call)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        def call() -> None:
            found = self._client.snapshots.get(cast(Any, snapshot_id), **self._options)
            snapshot = _expect(found, "snapshot", f"There is no snapshot {snapshot_id}.")
            if snapshot.get("resource_type") != "droplet":
                raise ServerError(
                    f"Snapshot {snapshot_id} is a volume snapshot; only droplet snapshots are "
                    "listed and deleted here.",
                    "invalid_input",
                )
            refused = self._client.snapshots.delete(cast(Any, snapshot_id), **self._options)
            if refused:  # a 204 has no body; pydo returns a 400 or 404 body instead of raising
                _refusal(refused, f"There is no snapshot {snapshot_id}.")

        await self._run(call)

    async def snapshot_cost_estimate(self) -> SnapshotCostEstimate:
        def call() -> SnapshotCostEstimate:
            found = self._all(self._client.snapshots.list, "snapshots", resource_type="droplet")
            stored = [_gb(s.get("size_gigabytes")) for s in found]
            disk = int(self._this().get("disk") or 0)
            return snapshot_cost(SNAPSHOT_PER_GB_MONTH, stored, disk)

        return await self._run(call)

    async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
        def call() -> Volume:
            found = self._find_volume(id_or_name)
            check_new_volume_size(_volume(found), new_size_gb, MAX_VOLUME_GB)
            body = {"type": "resize", "size_gigabytes": new_size_gb,
                    "region": found.get("region", {}).get("slug")}  # fmt: skip
            action = self._client.volume_actions.post_by_id(found["id"], body, **self._options)
            self._wait(_expect(action, "action", "DigitalOcean lost the volume."), "volume resize")
            again = self._client.volumes.get(found["id"], **self._options)
            return _volume(_expect(again, "volume", "DigitalOcean lost the volume."))

        return await self._run(call)

    async def volume_price(self, size_gb: int) -> Price:
        check_volume_size(size_gb)
        return VOLUME_PER_GB_MONTH.times(size_gb)

    async def power(self, server: str, action: PowerAction) -> None:
        check_power_action(action)
        await self._run(
            lambda: self._act_on_droplet(
                self._find_droplet(server), {"type": POWER[action]}, action
            )
        )

    # -- the one I/O seam -----------------------------------------------------------------------

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(self._translated, call)

    @staticmethod
    def _translated(call: Callable[[], _T]) -> _T:
        """Run ``call`` and turn whatever pydo or the network raises into a ServerError."""
        from azure.core.exceptions import AzureError  # noqa: PLC0415 - comes with pydo

        from providers.server.digitalocean_http import error_code  # noqa: PLC0415

        try:
            return call()
        except AzureError as exc:
            raise server_error(error_code(exc)) from None

    def _act_on_droplet(self, droplet: JSON, body: dict[str, str], what: str) -> None:
        started = self._client.droplet_actions.post(droplet["id"], body, **self._options)
        self._wait(_expect(started, "action", "DigitalOcean lost the droplet."), what)

    def _wait(self, action: JSON, what: str) -> None:
        deadline = time.monotonic() + self._action_timeout
        polls = 0
        while action.get("status") == "in-progress":
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"DigitalOcean did not finish the {what} within {self._action_timeout:g} s; "
                    "it may still be running.",
                    "action_timeout",
                )
            # Power actions end within seconds: look soon, then every poll_interval.
            time.sleep(min(self._poll_interval, 0.1 * 2**polls))
            polls += 1
            polled = self._client.actions.get(action["id"], **self._options)
            action = _expect(polled, "action", "DigitalOcean lost track of the action.")
        if action.get("status") != "completed":
            raise ServerError(f"DigitalOcean reports that the {what} failed.", "action_failed")

    def _all(self, fetch: Callable[..., JSON], key: str, *args: Any, **filters: Any) -> list[JSON]:
        """Every page of a list. It stops at a page without ``next``, an empty page or
        ``meta.total`` rows, so an API that always offers a next page cannot loop forever."""
        rows: list[JSON] = []
        page = 1
        while True:
            answer = fetch(*args, per_page=self._page_size, page=page, **filters, **self._options)
            chunk = answer.get(key) or []
            rows.extend(chunk)
            total = int((answer.get("meta") or {}).get("total") or 0)
            pages = (answer.get("links") or {}).get("pages") or {}
            if not chunk or "next" not in pages or len(rows) >= total:
                return rows
            page += 1

    # -- lookups ----------------------------------------------------------------------------------

    def _this(self) -> JSON:
        if self._this_id is not None:
            return self._find_droplet(str(self._this_id))
        found = choose_this_server(
            self._droplet_ref,
            self._public_ip,
            by_reference=self._find_droplet,
            by_address=self._droplet_with_ip,
            setting="STEWARD_DIGITALOCEAN_DROPLET",
            what="droplet",
        )
        self._this_id = int(found["id"])
        return found

    def _droplet_with_ip(self, address: str) -> JSON:
        return holding_address(
            self._all(self._client.droplets.list, "droplets"),
            address,
            _addresses,
            f"No droplet in this DigitalOcean account has the address {address}; "
            "set STEWARD_DIGITALOCEAN_DROPLET to its id or name.",
        )

    def _find_droplet(self, name_or_id: str) -> JSON:
        missing = f"There is no server {name_or_id!r} in this DigitalOcean account."
        if name_or_id.isdigit():
            answer = self._client.droplets.get(int(name_or_id), **self._options)
            return _expect(answer, "droplet", missing)
        named = self._all(self._client.droplets.list, "droplets", name=name_or_id)
        return _only(named, missing, f"Several droplets are named {name_or_id!r}; use its id.")

    def _find_volume(self, id_or_name: str) -> JSON:
        missing = f"There is no volume {id_or_name!r} in this DigitalOcean account."
        found = [v for v in self._all_volumes() if id_or_name in (v.get("id"), v.get("name"))]
        return _only(found, missing, f"Several volumes are named {id_or_name!r}; use its id.")

    def _all_volumes(self) -> list[JSON]:
        return self._all(self._client.volumes.list, "volumes")


# -- DigitalOcean's JSON as the Protocol's records ------------------------------------------------


def _expect(answer: JSON | None, key: str, missing: str) -> JSON:
    """The ``key`` object of an answer. pydo returns some 400 and 404 error bodies
    (``{"id", "message"}``) instead of raising: a 404 is ``missing``, others their sentence."""
    if answer is not None and key in answer:
        found: JSON = answer[key]
        return found
    return _refusal(answer or {}, missing)


def _refusal(body: JSON, missing: str) -> NoReturn:
    if body.get("id") == "not_found":
        raise ServerError(missing, "not_found")
    raise server_error("invalid_input" if body.get("id") == "bad_request" else "service_error")


def _only(found: list[JSON], missing: str, several: str) -> JSON:
    if not found:
        raise ServerError(missing, "not_found")
    if len(found) > 1:
        raise ServerError(several, "invalid_input")
    return found[0]


def _info(droplet: JSON) -> ServerInfo:
    size = droplet.get("size") or {}
    region = droplet.get("region") or {}
    monthly = size.get("price_monthly")
    transfer_tb = size.get("transfer")
    return ServerInfo(
        id=str(droplet["id"]),
        name=str(droplet.get("name") or droplet["id"]),
        status=STATUS.get(str(droplet.get("status")), str(droplet.get("status") or "unknown")),
        server_type=str(droplet.get("size_slug") or size.get("slug") or ""),
        cores=int(droplet.get("vcpus") or 0),
        memory_gb=int(droplet.get("memory") or 0) / 1024,
        disk_gb=int(droplet.get("disk") or 0),
        location=str(region.get("slug") or ""),
        city=_city(str(region.get("name") or "")),
        ipv4=_public(droplet, "v4"),
        ipv6=_public(droplet, "v6"),
        traffic_used_bytes=None,  # the droplet API does not report the transfer used
        traffic_included_bytes=int(Decimal(str(transfer_tb)) * 1000**4) if transfer_tb else None,
        price_monthly=None if monthly is None else Price(Decimal(str(monthly)), "USD"),
        backups_enabled="backups" in (droplet.get("features") or []),
        delete_protection=False,  # DigitalOcean has neither protection
        rebuild_protection=False,
    )


def _city(region_name: str) -> str:
    """``Frankfurt 1`` is the city and the data centre's number."""
    city, _, number = region_name.rpartition(" ")
    return city if city and number.isdigit() else region_name


def _public(droplet: JSON, family: str) -> str | None:
    networks = (droplet.get("networks") or {}).get(family) or []
    return next((str(n["ip_address"]) for n in networks if n.get("type") == "public"), None)


def _addresses(droplet: JSON) -> list[str]:
    found = (_public(droplet, "v4"), _public(droplet, "v6"))
    return [address for address in found if address]


def _volume(volume: JSON) -> Volume:
    size = int(volume.get("size_gigabytes") or 0)
    droplets = volume.get("droplet_ids") or []
    return Volume(
        id=str(volume["id"]),
        name=str(volume.get("name") or volume["id"]),
        size_gb=size,
        # DigitalOcean's udev name for an attached volume
        linux_device=f"/dev/disk/by-id/scsi-0DO_Volume_{volume.get('name')}",
        server_id=str(droplets[0]) if droplets else None,
        price_monthly=VOLUME_PER_GB_MONTH.times(size),
    )


def _snapshot(snapshot: JSON) -> Snapshot:
    size = snapshot.get("size_gigabytes")
    cost = None if size is None else SNAPSHOT_PER_GB_MONTH.times(_gb(size))
    created = snapshot.get("created_at")
    return Snapshot(
        id=str(snapshot["id"]),
        description=str(snapshot.get("name") or ""),
        created=datetime.fromisoformat(created) if created else datetime.now(UTC),
        size_gb=None if size is None else float(size),
        monthly_cost=cost,
    )


def _newest_first(snapshots: list[Snapshot]) -> list[Snapshot]:
    def key(s: Snapshot) -> tuple[datetime, int]:
        return s.created, int(s.id) if s.id.isdigit() else 0

    return sorted(snapshots, key=key, reverse=True)


def _gb(value: object) -> Decimal:
    return Decimal(str(value or 0))

"""The cloud server this bot runs on: its facts, volumes, snapshots, prices and power.

Prices are gross (VAT included) ``Decimal`` amounts with their currency, as the provider
publishes them; nothing here is a float.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

from values import value

PowerAction = Literal["reset", "poweroff", "poweron"]
POWER_ACTIONS: tuple[str, ...] = get_args(PowerAction)
_T = TypeVar("_T")


class ServerError(Exception):
    """A cloud call failed; ``str()`` is one short sentence that is safe to show in a chat.

    ``code`` is the provider's machine-readable reason (``not_found``, ``forbidden``,
    ``rate_limit_exceeded``, ``unreachable``, ...), for callers that react to it.
    """

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


# One sentence for each reason, shared by the real adapter and the in-memory fake so that
# the chat reads the same in demo mode and in production.
_SENTENCES = {
    "unauthorized": "The cloud provider refused the API token: it is unknown or revoked.",
    "forbidden": "The API token may not do this: it needs Read & Write permission.",
    "token_readonly": "The API token may not do this: it needs Read & Write permission.",
    "rate_limit_exceeded": "The cloud API's rate limit is used up; try again in a few minutes.",
    "locked": "The server is busy with another action; try again when it has finished.",
    "not_found": "The cloud provider does not know that resource.",
    "invalid_input": "The cloud provider refused the request as invalid.",
    "conflict": "The resource changed during the request; try again.",
    "protected": "The resource is protected against this action.",
    "maintenance": "The cloud provider is in maintenance; try again later.",
    "service_error": "The cloud API has a problem right now; try again later.",
    "server_error": "The cloud API has a problem right now; try again later.",
    "unreachable": "Cannot reach the cloud API.",
    "timeout": "The cloud API did not answer in time; try again later.",
}


def server_error(code: str) -> ServerError:
    """The ServerError for a provider error code; unknown codes get a generic sentence."""
    sentence = _SENTENCES.get(code, "The cloud provider refused the request.")
    return ServerError(sentence, code)


@value
class Price:
    """A gross monthly amount, exactly as published (``Decimal``, never float)."""

    gross: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.gross.quantize(Decimal('0.01'))} {self.currency}"

    def times(self, quantity: Decimal | int) -> Price:
        """This price per unit (a GB-month), for ``quantity`` units."""
        return Price(self.gross * quantity, self.currency)


@value
class ServerInfo:
    id: str  # as the provider writes it: digits at Hetzner, UUIDs at Scaleway and OVHcloud
    name: str
    status: str  # running, off, starting, stopping, rebuilding, migrating, ...
    server_type: str
    cores: int
    memory_gb: float
    disk_gb: int
    location: str  # e.g. fsn1
    city: str
    ipv4: str | None
    ipv6: str | None  # the routed /64 network
    traffic_used_bytes: int | None  # outgoing traffic in this billing period
    traffic_included_bytes: int | None
    price_monthly: Price | None  # None when the provider lists no price for the location
    backups_enabled: bool
    delete_protection: bool
    rebuild_protection: bool


@value
class Volume:
    id: str
    name: str
    size_gb: int
    linux_device: str
    server_id: str | None
    price_monthly: Price


@value
class Snapshot:
    id: str
    description: str
    created: datetime
    size_gb: float | None  # compressed size; None while the snapshot is being made
    monthly_cost: Price | None  # size_gb x the price per GB-month


@value
class SnapshotCostEstimate:
    """What snapshots cost: the provider charges per GB-month of stored snapshot."""

    price_per_gb_month: Price
    existing_count: int
    existing_monthly: Price  # all snapshots kept today
    new_snapshot_max_monthly: Price  # one more snapshot of this server, at most its disk size


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class ServerProvider(Protocol):
        async def this_server(self) -> ServerInfo:
            """The server the bot runs on."""
            ...

        async def server(self, name_or_id: str) -> ServerInfo: ...

        async def volumes(self) -> list[Volume]: ...

        async def snapshots(self) -> list[Snapshot]:
            """Snapshot images of the project, newest first."""
            ...

        async def create_snapshot(self, description: str) -> Snapshot:
            """Snapshot this server's disk; returns when the provider has finished it."""
            ...

        async def delete_snapshot(self, snapshot_id: str) -> None: ...

        async def snapshot_cost_estimate(self) -> SnapshotCostEstimate: ...

        async def resize_volume(self, id_or_name: str, new_size_gb: int) -> Volume:
            """Grow a volume; a size below today's is refused before anything is sent."""
            ...

        async def volume_price(self, size_gb: int) -> Price: ...

        async def power(self, server: str, action: PowerAction) -> None:
            """``server`` is a name or id; returns when the provider has finished the action."""
            ...


def check_new_volume_size(volume: Volume, new_size_gb: int, max_gb: int = 10240) -> None:
    """The rule both implementations apply before resizing: volumes only grow."""
    if new_size_gb < volume.size_gb:
        raise ServerError(
            f"Volume {volume.name} is {volume.size_gb} GB; it cannot shrink to "
            f"{new_size_gb} GB, only grow.",
            "invalid_input",
        )
    if new_size_gb == volume.size_gb:
        raise ServerError(f"Volume {volume.name} is already {volume.size_gb} GB.", "invalid_input")
    if new_size_gb > max_gb:
        raise ServerError(f"A volume can be at most {max_gb} GB.", "invalid_input")


def check_power_action(action: str) -> None:
    if action not in POWER_ACTIONS:
        raise ServerError(
            f"Unknown power action {action!r}; use one of {', '.join(POWER_ACTIONS)}.",
            "invalid_input",
        )


def check_volume_size(size_gb: int) -> None:
    """The rule every implementation applies before pricing a volume."""
    if size_gb < 1:
        raise ServerError("A volume size is a whole number of GB, at least 1.", "invalid_input")


def snapshot_cost(
    per_gb: Price, stored_sizes: Iterable[Decimal], disk_gb: Decimal | int
) -> SnapshotCostEstimate:
    """The estimate from the price per GB-month, the sizes of the snapshots kept today (0 for
    one still being made) and this server's disk, the most one more snapshot can hold."""
    sizes = list(stored_sizes)
    return SnapshotCostEstimate(
        price_per_gb_month=per_gb,
        existing_count=len(sizes),
        existing_monthly=per_gb.times(sum(sizes, Decimal(0))),
        new_snapshot_max_monthly=per_gb.times(Decimal(disk_gb)),
    )


def choose_this_server(
    reference: str | None,
    public_ip: str | None,
    *,
    by_reference: Callable[[str], _T],
    by_address: Callable[[str], _T],
    setting: str,
    what: str = "server",
) -> _T:
    """The server the bot runs on: by its configured id or name (``setting``), else by its
    public address; with neither, a ServerError naming the setting."""
    if reference:
        return by_reference(reference)
    if public_ip:
        return by_address(public_ip)
    raise ServerError(
        f"This {what} is not named: set {setting} to its id or name.", "not_configured"
    )


def holding_address(
    candidates: Iterable[_T], address: str, networks: Callable[[_T], Iterable[str]], missing: str
) -> _T:
    """The first candidate whose public addresses or networks (``networks()``: ``a.b.c.d``,
    ``2001:db8::1``, ``2001:db8::/64``) hold ``address``; else ServerError ``missing``."""
    wanted = ipaddress.ip_address(address)
    for candidate in candidates:
        if any(wanted in ipaddress.ip_network(n, strict=False) for n in networks(candidate)):
            return candidate
    raise ServerError(missing, "not_found")


def found_or_missing(lookup: Callable[[], _T | None], missing: str, errors: type[Exception]) -> _T:
    """What ``lookup`` finds; a ServerError ``missing`` when it finds nothing or raises one of
    ``errors`` (the SDK's) with the code ``not_found``. Other errors pass through."""
    try:
        found = lookup()
    except errors as exc:
        if getattr(exc, "code", None) != "not_found":
            raise
        found = None
    if found is None:
        raise ServerError(missing, "not_found")
    return found


def settle(
    read: Callable[[], _T],
    done: Callable[[_T], bool],
    *,
    what: str,
    provider: str,
    timeout: float,
    interval: float,
) -> _T:
    """Read a resource every ``interval`` seconds until ``done``; after ``timeout`` seconds a
    ServerError ``action_timeout`` says that the provider did not finish ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if done(found):
            return found
        if time.monotonic() >= deadline:
            raise ServerError(
                f"{provider} did not finish the {what} within {timeout:g} s; "
                "it may still be running.",
                "action_timeout",
            )
        time.sleep(interval)

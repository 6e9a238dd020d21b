"""The cloud server this bot runs on: its facts, volumes, snapshots, prices and power.

Prices are gross (VAT included) ``Decimal`` amounts with their currency, as the provider
publishes them; nothing here is a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol, get_args

PowerAction = Literal["reset", "poweroff", "poweron"]
POWER_ACTIONS: tuple[str, ...] = get_args(PowerAction)


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


@dataclass(frozen=True, slots=True)
class Price:
    """A gross monthly amount, exactly as published (``Decimal``, never float)."""

    gross: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.gross.quantize(Decimal('0.01'))} {self.currency}"


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Volume:
    id: str
    name: str
    size_gb: int
    linux_device: str
    server_id: str | None
    price_monthly: Price


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    description: str
    created: datetime
    size_gb: float | None  # compressed size; None while the snapshot is being made
    monthly_cost: Price | None  # size_gb x the price per GB-month


@dataclass(frozen=True, slots=True)
class SnapshotCostEstimate:
    """What snapshots cost: the provider charges per GB-month of stored snapshot."""

    price_per_gb_month: Price
    existing_count: int
    existing_monthly: Price  # all snapshots kept today
    new_snapshot_max_monthly: Price  # one more snapshot of this server, at most its disk size


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

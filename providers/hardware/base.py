"""Hardware: the Protocols the disk, array and UPS probes follow, and the readings they return.

The adapters are ``disks.SmartctlDisks``, ``arrays.HostArrays`` and ``ups.NutUps``; the fakes
are in ``memory``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from values import value

# smartctl's exit status is a bit mask (smartctl(8), RETURN VALUES).
BIT_COMMAND_LINE = 1 << 0
BIT_OPEN_FAILED = 1 << 1  # also: the device is asleep and -n standby said so
BIT_SMART_FAILED = 1 << 2  # a SMART command failed, or a checksum error
BIT_DISK_FAILING = 1 << 3  # SMART status check returned "DISK FAILING"
BIT_PREFAIL = 1 << 4  # prefail attributes at or below their threshold


# --- disks --------------------------------------------------------------------------------------


@value
class DiskHealth:
    device: str
    model: str = ""
    serial: str = ""
    protocol: str = ""  # "ATA", "NVMe", "SCSI"
    passed: bool | None = None  # SMART overall status; None when not read
    reallocated: int | None = None
    pending: int | None = None
    uncorrectable: int | None = None
    temperature: int | None = None
    percentage_used: int | None = None  # NVMe wear
    critical_warning: int | None = None  # NVMe critical warning bits
    exit_status: int = 0
    asleep: bool = False  # in standby: not woken up to be read
    problem: str = ""  # why it could not be read, when it could not
    stale_seconds: float | None = None  # for recorded documents past disks.STALE_SECONDS

    @property
    def failing(self) -> bool:
        """SMART says the disk fails, an attribute is past its threshold, or NVMe warns."""
        return (
            self.passed is False
            or bool(self.exit_status & (BIT_DISK_FAILING | BIT_PREFAIL))
            or bool(self.critical_warning)
        )

    @property
    def name(self) -> str:
        label = self.model or self.protocol
        return f"{self.device} ({label})" if label else self.device


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class DiskProbe(Protocol):
        async def disks(self) -> list[DiskHealth]:
            """Every disk smartctl finds; OSError when smartctl itself cannot run."""
            ...

    class ArrayProbe(Protocol):
        async def arrays(self) -> tuple[list[ArrayHealth], set[str]]:
            """The arrays found, and the kinds that answered (so that an array missing from a
            kind that answered is healthy or gone, while one of a kind that did not is unknown)."""
            ...

    class UpsProbe(Protocol):
        async def status(self) -> UpsStatus:
            """OSError with a short reason when NUT does not answer."""
            ...


# --- arrays -------------------------------------------------------------------------------------

State = Literal["ok", "rebuilding", "degraded", "failed"]


@value
class ArrayHealth:
    name: str  # md0, the ZFS pool, the btrfs mount point
    kind: Literal["mdadm", "zfs", "btrfs"]
    state: State
    detail: str  # "raid1 [U_]", "recovery 8.5%, ~101 min left", "DEGRADED"


# --- UPS ----------------------------------------------------------------------------------------


@value
class UpsStatus:
    name: str
    flags: frozenset[str]  # OL on line, OB on battery, LB low battery, RB replace battery …
    charge: float | None = None  # percent
    runtime_seconds: float | None = None

    @property
    def on_battery(self) -> bool:
        return "OB" in self.flags

    @property
    def low_battery(self) -> bool:
        return "LB" in self.flags

    @property
    def runtime_minutes(self) -> float | None:
        return self.runtime_seconds / 60 if self.runtime_seconds is not None else None

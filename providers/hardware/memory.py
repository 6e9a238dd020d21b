"""Disks, arrays and a UPS in memory, for the demo and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.hardware.base import ArrayHealth, DiskHealth, UpsStatus


@dataclass
class MemoryDisks:
    """In memory, for the demo and the tests; ``down`` fails as a missing smartctl does."""

    found: list[DiskHealth] = field(default_factory=list)
    down: bool = False

    async def disks(self) -> list[DiskHealth]:
        if self.down:
            raise OSError("cannot run smartctl: No such file or directory")
        return list(self.found)


@dataclass
class MemoryArrays:
    found: list[ArrayHealth] = field(default_factory=list)
    answered: set[str] = field(default_factory=lambda: {"mdadm", "zfs", "btrfs"})

    async def arrays(self) -> tuple[list[ArrayHealth], set[str]]:
        return list(self.found), set(self.answered)


@dataclass
class MemoryUps:
    value: UpsStatus
    down: bool = False

    async def status(self) -> UpsStatus:
        if self.down:
            raise OSError("Error: Driver not connected")
        return self.value

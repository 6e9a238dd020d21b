"""The home-server demo's hardware (``STEWARD_DEMO=home``)."""

from __future__ import annotations

from providers.hardware.base import ArrayHealth, DiskHealth, UpsStatus
from providers.hardware.memory import MemoryArrays, MemoryDisks, MemoryUps
from providers.host.memory import MemoryPublicAddress

# The demo zone's records say 203.0.113.10; the router has handed out a new address since.
CHANGED_ADDRESS = "203.0.113.77"


def home_hardware() -> tuple[MemoryDisks, MemoryArrays, MemoryUps, MemoryPublicAddress]:
    """Two disks, one of them with pending sectors; a mirror that lost a disk; a UPS on mains;
    and a public address that changed since the DNS records were written."""
    disks = MemoryDisks([
        DiskHealth("/dev/sda", "WDC WD40EFRX-68N32N0", "WD-WCC7K0DEMO01", "ATA", passed=True,
                   reallocated=0, pending=0, uncorrectable=0, temperature=34),
        DiskHealth("/dev/sdb", "ST4000VN008-2DR166", "ZGY0DEMO02", "ATA", passed=True,
                   reallocated=0, pending=8, uncorrectable=8, temperature=38),
    ])  # fmt: skip
    mirror = ArrayHealth("md0", "mdadm", "degraded", "raid1 [U_]")
    ups = UpsStatus("ups@localhost", frozenset({"OL"}), charge=100.0, runtime_seconds=2520.0)
    return disks, MemoryArrays([mirror]), MemoryUps(ups), MemoryPublicAddress(CHANGED_ADDRESS)

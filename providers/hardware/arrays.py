"""RAID and pool health: mdadm from ``/proc/mdstat``, ZFS from ``zpool status -x``, btrfs from
``btrfs device stats``; each only where it is present.

``/proc/mdstat`` is world-readable. ``zpool`` needs ``/dev/zfs`` and ``btrfs`` root, which the
bot does not have on NixOS: there the root ``steward-health`` unit records their output into a
folder (``zpool-status.txt``, ``btrfs-<n>.txt``) and the bot reads it from there.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from providers.hardware.base import ArrayHealth, State
from providers.host.base import run_with_status, systemd_escape_path

_MD_HEAD = re.compile(r"^(md\w+)\s*:\s*(\w+)(.*)$", re.MULTILINE)
_MD_LEVEL = re.compile(r"\b(raid\d+|linear|multipath)\b")
_MD_SLOTS = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]")
_MD_PROGRESS = re.compile(
    r"(resync|recovery|reshape|check|repair)\s*=\s*([\d.]+)%.*?finish=([\d.]+)min"
)
_BTRFS = re.compile(r"^\[(.+?)\]\.(\w+)\s+(\d+)$")


def parse_mdstat(text: str) -> list[ArrayHealth]:
    arrays: list[ArrayHealth] = []
    blocks = re.split(r"\n(?=md\w+\s*:)", text)
    for block in blocks:
        head = _MD_HEAD.match(block.strip())
        if head is None:
            continue
        name, active = head.group(1), head.group(2)
        found = _MD_LEVEL.search(head.group(3))
        level = found.group(1) if found else "array"
        if active != "active":
            arrays.append(ArrayHealth(name, "mdadm", "failed", f"{level} is {active}"))
            continue
        arrays.append(_md_array(name, level, block))
    return arrays


def _md_array(name: str, level: str, block: str) -> ArrayHealth:
    slots, progress = _MD_SLOTS.search(block), _MD_PROGRESS.search(block)
    shape = f"{level} [{slots.group(3)}]" if slots else level
    running = ""
    if progress is not None:
        verb, percent, minutes = progress.groups()
        running = f", {verb} {percent}%, ~{float(minutes):.0f} min left"
    missing = slots is not None and int(slots.group(2)) < int(slots.group(1))
    if not missing:
        return ArrayHealth(name, "mdadm", "ok", shape + running)
    state: State = "rebuilding" if progress and progress.group(1) == "recovery" else "degraded"
    return ArrayHealth(name, "mdadm", state, shape + running)


def parse_zpool_x(text: str) -> list[ArrayHealth]:
    """``zpool status -x`` names only pools that are not healthy."""
    pools: list[ArrayHealth] = []
    for block in re.split(r"\n(?=\s*pool:)", text):
        fields = dict(_zpool_field(line) for line in block.splitlines() if ":" in line)
        name, state = fields.get("pool"), fields.get("state", "")
        if not name:
            continue
        errors = fields.get("errors", "No known data errors")
        scan = fields.get("scan", "")
        if state in {"FAULTED", "UNAVAIL", "SUSPENDED"}:
            pools.append(ArrayHealth(name, "zfs", "failed", state))
        elif state == "DEGRADED":
            kind: State = "rebuilding" if "resilver in progress" in scan else "degraded"
            pools.append(ArrayHealth(name, "zfs", kind, f"DEGRADED, {scan}" if scan else state))
        elif errors != "No known data errors":
            pools.append(ArrayHealth(name, "zfs", "degraded", f"{state}, errors: {errors}"))
        else:
            pools.append(ArrayHealth(name, "zfs", "ok", state or "ONLINE"))
    return pools


def _zpool_field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def parse_btrfs_stats(mount: str, text: str) -> ArrayHealth:
    """Error counters of each device; they count up until reset with ``btrfs device stats -z``."""
    errors: dict[str, int] = {}
    for line in text.splitlines():
        match = _BTRFS.match(line.strip())
        if match and int(match.group(3)):
            device, counter, count = match.groups()
            errors[f"{device} {counter.removesuffix('_errs')}"] = int(count)
    if not errors:
        return ArrayHealth(mount, "btrfs", "ok", "no device errors")
    shown = ", ".join(f"{what} {count}" for what, count in sorted(errors.items()))
    return ArrayHealth(mount, "btrfs", "degraded", f"device errors: {shown}")


def btrfs_mounts(text: str) -> list[str]:
    """Mount points of btrfs filesystems in a mounts table, one per filesystem."""
    seen: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "btrfs":
            seen.setdefault(parts[0], parts[1].replace("\\040", " "))
    return sorted(seen.values())


def recorded_btrfs_name(mount: str) -> str:
    """The recorder writes ``btrfs device stats`` of every btrfs mount to a file named by
    ``systemd-escape --path``: ``/srv/data`` → ``btrfs-srv-data.txt``."""
    return f"btrfs-{systemd_escape_path(mount)}.txt"


class HostArrays:
    """The real adapter. ``recorded`` is the root recorder's folder (see the module doc)."""

    def __init__(
        self,
        mdstat: Path = Path("/proc/mdstat"),
        mounts: Path = Path("/proc/self/mounts"),
        recorded: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._mdstat, self._mounts = mdstat, mounts
        self._recorded, self._timeout = recorded, timeout

    async def arrays(self) -> tuple[list[ArrayHealth], set[str]]:
        found: list[ArrayHealth] = []
        answered: set[str] = set()
        for kind, read in (("mdadm", self._md), ("zfs", self._zfs), ("btrfs", self._btrfs)):
            try:
                part = await read()
            except OSError:
                continue
            if part is not None:
                found.extend(part)
                answered.add(kind)
        return found, answered

    async def _md(self) -> list[ArrayHealth] | None:
        if not self._mdstat.exists():
            return None  # no md driver loaded: no arrays, nothing to say
        return parse_mdstat(await asyncio.to_thread(self._mdstat.read_text))

    async def _zfs(self) -> list[ArrayHealth] | None:
        if self._recorded is not None:
            path = self._recorded / "zpool-status.txt"
            return parse_zpool_x(path.read_text()) if path.exists() else None
        if shutil.which("zpool") is None:
            return None
        status, out, _ = await run_with_status("zpool", ["status", "-x"], self._timeout)
        if status != 0:
            raise OSError(f"zpool exited {status}")
        return parse_zpool_x(out)

    async def _btrfs(self) -> list[ArrayHealth] | None:
        mounts = btrfs_mounts(await asyncio.to_thread(self._mounts.read_text))
        if not mounts:
            return None
        if self._recorded is not None:
            return self._recorded_btrfs(mounts)
        if shutil.which("btrfs") is None:
            return None
        found = []
        for mount in mounts:
            status, out, _ = await run_with_status("btrfs", ["device", "stats", "--", mount],
                                                self._timeout)  # fmt: skip
            if status != 0:
                raise OSError(f"btrfs device stats {mount} exited {status}")
            found.append(parse_btrfs_stats(mount, out))
        return found

    def _recorded_btrfs(self, mounts: list[str]) -> list[ArrayHealth] | None:
        assert self._recorded is not None  # noqa: S101 - only called with a folder
        found = []
        for mount in mounts:
            path = self._recorded / recorded_btrfs_name(mount)
            if not path.exists():
                return None  # the recorder has not run since this mount appeared
            found.append(parse_btrfs_stats(mount, path.read_text()))
        return found

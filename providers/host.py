"""Host metrics: uptime, load, memory and disks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Pseudo and container filesystems say nothing about whether the disk fills up.
_SKIP_FSTYPES = frozenset(
    {"tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "ramfs", "efivarfs", "nsfs"}
)


@dataclass(frozen=True, slots=True)
class DiskUsage:
    mount: str
    total_bytes: int
    used_bytes: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True, slots=True)
class HostMetrics:
    hostname: str
    uptime_seconds: float
    load: tuple[float, float, float]
    cores: int
    memory_total_bytes: int
    memory_available_bytes: int
    disks: tuple[DiskUsage, ...]

    @property
    def memory_used_percent(self) -> float:
        used = self.memory_total_bytes - self.memory_available_bytes
        return 100.0 * used / self.memory_total_bytes if self.memory_total_bytes else 0.0


class HostProbe(Protocol):
    async def metrics(self) -> HostMetrics: ...

    async def folder_sizes(self, folders: Sequence[str]) -> dict[str, int | None]:
        """Bytes used under each folder; None where it could not be measured in time."""
        ...


class PsutilHost:
    """The real adapter. psutil reads /proc; it runs in a thread so a slow mount never stalls
    the chat."""

    def __init__(self, du_timeout: float = 20.0) -> None:
        self._du_timeout = du_timeout

    async def metrics(self) -> HostMetrics:
        return await asyncio.to_thread(self._read)

    async def folder_sizes(self, folders: Sequence[str]) -> dict[str, int | None]:
        """One ``du`` for all folders (it is fast C and counts hard links once); a folder
        with millions of files may take longer than the timeout, and reads as unknown."""
        if not folders:
            return {}
        env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
        sizes: dict[str, int | None] = dict.fromkeys(folders)
        try:
            proc = await asyncio.create_subprocess_exec(
                "du", "--summarize", "--bytes", "--", *folders,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except OSError:
            return sizes
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self._du_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return sizes
        # du exits 1 when one folder is missing but still prints the others.
        for line in out.decode(errors="replace").splitlines():
            size, _, folder = line.partition("\t")
            if folder in sizes and size.isdigit():
                sizes[folder] = int(size)
        return sizes

    def _read(self) -> HostMetrics:
        import psutil  # noqa: PLC0415 - only the real adapter pays for it

        memory = psutil.virtual_memory()
        disks: list[DiskUsage] = []
        for part in psutil.disk_partitions(all=False):
            if part.fstype in _SKIP_FSTYPES or any(d.mount == part.mountpoint for d in disks):
                continue
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            disks.append(DiskUsage(part.mountpoint, int(usage.total), int(usage.used)))
        return HostMetrics(
            hostname=socket.gethostname(),
            uptime_seconds=time.time() - float(psutil.boot_time()),
            load=os.getloadavg(),
            cores=psutil.cpu_count() or 1,
            memory_total_bytes=int(memory.total),
            memory_available_bytes=int(memory.available),
            disks=tuple(disks),
        )

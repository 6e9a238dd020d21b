"""Host metrics: uptime, load, memory and disks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


def _cert_names(folder: str) -> list[str]:
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        name
        for name in entries
        if not name.startswith(".") and os.path.isfile(os.path.join(folder, name, "cert.pem"))
    ]


def parse_enddate(text: str) -> datetime | None:
    """``notAfter=Feb 26 12:00:00 2027 GMT`` (openssl x509 -enddate) as an aware datetime."""
    _, _, value = text.strip().partition("=")
    try:
        return datetime.strptime(value.strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    except ValueError:
        return None


def public_address() -> str | None:
    """This machine's first global IPv4 address (to find it among cloud servers), or None."""
    import ipaddress  # noqa: PLC0415

    import psutil  # noqa: PLC0415

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family != socket.AF_INET:
                continue
            try:
                if ipaddress.ip_address(address.address).is_global:
                    return str(address.address)
            except ValueError:
                continue
    return None


def systemd_escape_path(path: str) -> str:
    """``systemd-escape --path``: ``/dev/disk/by-id/x-1`` → ``dev-disk-by\\x2did-x\\x2d1``."""
    trimmed = path.strip("/")
    out = []
    for index, char in enumerate(trimmed):
        if char == "/":
            out.append("-")
        elif char.isascii() and (char.isalnum() or char in ":_" or (char == "." and index)):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out) or "-"


class HostProbe(Protocol):
    async def metrics(self) -> HostMetrics: ...

    async def folder_sizes(self, folders: Sequence[str]) -> dict[str, int | None]:
        """Bytes used under each folder; None where it could not be measured in time."""
        ...

    async def device_usage(self, device: str) -> DiskUsage | None:
        """Where a block device (a cloud volume) is mounted and how full it is; None when it
        is not mounted."""
        ...

    async def grow_filesystem(self, device: str) -> None:
        """Grow the filesystem on ``device`` to the size of the device (after a volume resize).
        Raises OSError with a short reason."""
        ...

    async def certificates(self, folder: str) -> dict[str, datetime | None]:
        """The ``cert.pem`` of each subfolder of ``folder`` (NixOS's /var/lib/acme) and when
        it expires; None where it cannot be read."""
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

    async def device_usage(self, device: str) -> DiskUsage | None:
        return await asyncio.to_thread(self._device_usage, device)

    def _device_usage(self, device: str) -> DiskUsage | None:
        import psutil  # noqa: PLC0415

        wanted = os.path.realpath(device)
        for part in psutil.disk_partitions(all=False):
            if os.path.realpath(part.device) != wanted:
                continue
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                return None
            return DiskUsage(part.mountpoint, int(usage.total), int(usage.used))
        return None

    async def grow_filesystem(self, device: str) -> None:
        """Growing a filesystem needs root: the NixOS module's ``steward-growfs@`` unit does it
        (resize2fs or xfs_growfs), and polkit lets the bot start it for cloud volumes only."""
        from providers.host.systemd import UnitError, run_tool  # noqa: PLC0415

        unit = f"steward-growfs@{systemd_escape_path(device)}.service"
        try:
            await run_tool("systemctl", ["start", "--", unit], self._du_timeout * 15)
        except UnitError as exc:
            raise OSError(str(exc)) from None

    async def certificates(self, folder: str) -> dict[str, datetime | None]:
        from providers.host.systemd import UnitError, run_tool  # noqa: PLC0415

        names = await asyncio.to_thread(_cert_names, folder)
        found: dict[str, datetime | None] = {}
        for name in names:
            path = os.path.join(folder, name, "cert.pem")
            try:
                out = await run_tool(
                    "openssl", ["x509", "-noout", "-enddate", "-in", path], self._du_timeout
                )
            except UnitError:
                found[name] = None
                continue
            found[name] = parse_enddate(out)
        return found

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

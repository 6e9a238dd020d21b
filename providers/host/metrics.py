"""Host metrics: uptime, load, memory and disks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from providers.host.base import DiskUsage, HostMetrics, UnitError, run_tool, systemd_escape_path

# Pseudo and container filesystems say nothing about whether the disk fills up.
_SKIP_FSTYPES = frozenset(
    {"tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "ramfs", "efivarfs", "nsfs"}
)


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
        unit = f"steward-growfs@{systemd_escape_path(device)}.service"
        try:
            await run_tool("systemctl", ["start", "--", unit], self._du_timeout * 15)
        except UnitError as exc:
            raise OSError(str(exc)) from None

    async def certificates(self, folder: str) -> dict[str, datetime | None]:
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

"""The host's protocols and the plain types other domains share: systemd units
(``ServiceManager``), host metrics (``HostProbe``), and ``run_tool``, the one seam through which
every adapter that drives a system tool runs it.

Other domains import from here, never from ``systemd`` or ``metrics`` (the adapters).
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from values import value


class Health(enum.IntEnum):
    """A service is as healthy as its worst unit; higher is worse."""

    ACTIVE = 0
    CHANGING = 1
    OFF = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return {0: "active", 1: "changing", 2: "off", 3: "failed"}[self.value]


@value
class UnitStatus:
    name: str
    load_state: str
    active_state: str
    sub_state: str
    since: datetime | None = None
    memory_bytes: int | None = None

    @property
    def health(self) -> Health:
        if self.active_state == "failed":
            return Health.FAILED
        if self.load_state in {"not-found", "masked", "error"} or self.active_state == "inactive":
            return Health.OFF
        if self.active_state == "active":
            return Health.ACTIVE
        return Health.CHANGING


def missing(unit: str) -> UnitStatus:
    return UnitStatus(unit, "not-found", "inactive", "dead")


def worst(statuses: Sequence[UnitStatus]) -> Health:
    return max((status.health for status in statuses), default=Health.OFF)


class UnitError(Exception):
    """systemctl failed; the message is short and safe to show."""


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class ServiceManager(Protocol):
        async def status(self, units: Sequence[str]) -> dict[str, UnitStatus]:
            """Every asked unit is in the answer; one that systemd does not know is ``missing``."""
            ...

        async def failed_units(self) -> list[str]: ...

        async def start(self, unit: str) -> None: ...

        async def stop(self, unit: str) -> None: ...

        async def restart(self, unit: str) -> None: ...

        async def logs(self, units: Sequence[str], lines: int) -> list[str]:
            """The newest ``lines`` journal lines of ``units`` together, oldest first."""
            ...

        async def reboot(self) -> None:
            """Ask systemd to reboot the machine; it returns before the machine goes down."""
            ...

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

    class PublicAddressProbe(Protocol):
        async def address(self) -> str:
            """The address in its canonical spelling; OSError with a short reason otherwise."""
            ...


async def run_with_status(
    tool: str, args: list[str], limit: float, cwd: str | None = None
) -> tuple[int, str, str]:
    """Run a system tool from PATH: an argument list, a minimal environment, a time limit.
    Returns its exit status, output and error output, for tools whose status is not a plain
    failure (smartctl's is a bit mask). OSError when it cannot run; TimeoutError (an OSError)
    when it does not finish in time, and it is killed."""
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
    proc = await asyncio.create_subprocess_exec(
        tool,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise TimeoutError(f"{tool} {args[0]} timed out after {limit:g} s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def run_tool(tool: str, args: list[str], limit: float, cwd: str | None = None) -> str:
    """``run_with_status`` for a tool whose failure is a failure: it becomes a ``UnitError``
    with the line that says why."""
    try:
        status, out, err = await run_with_status(tool, args, limit, cwd)
    except TimeoutError as exc:
        raise UnitError(str(exc)) from None
    except OSError as exc:
        raise UnitError(f"cannot run {tool}: {exc.strerror}") from None
    if status != 0:
        raise UnitError(_reason(err) or f"{tool} exited {status}")
    return out


def _reason(stderr: str) -> str:
    """The line that says what went wrong: systemctl adds warnings before it and a hint
    ('See "systemctl status x.service" ...') after it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # nix and nixos-rebuild print their progress on stderr too; their reason says "error:".
    errors = [line for line in lines if line.startswith("error:")]
    useful = [line for line in lines if not line.startswith(("Warning:", "See ", "Hint:"))]
    return (errors or useful or lines or [""])[0]


@value
class DiskUsage:
    mount: str
    total_bytes: int
    used_bytes: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@value
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


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

"""Disk health from ``smartctl --json`` (smartmontools 7.x).

``smartctl --json --scan`` names the disks; ``smartctl --json -a`` reads each one. Reading SMART
data needs raw device access (CAP_SYS_RAWIO, CAP_SYS_ADMIN for NVMe), which the bot does not
have on NixOS: there the module's root ``steward-health`` unit records the same JSON documents
into a folder, and the bot reads them from there (``recorded``). Both paths go through
``parse_smart``, so a document means the same thing wherever it comes from.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# smartctl's exit status is a bit mask (smartctl(8), RETURN VALUES).
BIT_COMMAND_LINE = 1 << 0
BIT_OPEN_FAILED = 1 << 1  # also: the device is asleep and -n standby said so
BIT_SMART_FAILED = 1 << 2  # a SMART command failed, or a checksum error
BIT_DISK_FAILING = 1 << 3  # SMART status check returned "DISK FAILING"
BIT_PREFAIL = 1 << 4  # prefail attributes at or below their threshold
UNREADABLE = BIT_COMMAND_LINE | BIT_OPEN_FAILED | BIT_SMART_FAILED
# ATA attribute ids: reallocated, current pending, offline uncorrectable, temperature.
REALLOCATED, PENDING, UNCORRECTABLE, TEMPERATURE = 5, 197, 198, 194
# Recorded documents older than this say the recorder has stopped.
STALE_SECONDS = 3 * 3600


@dataclass(frozen=True, slots=True)
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
    stale_seconds: float | None = None  # for recorded documents past STALE_SECONDS

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


class DiskProbe(Protocol):
    async def disks(self) -> list[DiskHealth]:
        """Every disk smartctl finds; OSError when smartctl itself cannot run."""
        ...


def _raw(table: list[Any], attribute: int) -> int | None:
    for row in table:
        if isinstance(row, dict) and row.get("id") == attribute:
            raw = row.get("raw", {})
            value = raw.get("value") if isinstance(raw, dict) else None
            if attribute == TEMPERATURE and isinstance(raw, dict):
                # The raw value packs min/max into high bytes: "37 (Min/Max 20/45)".
                first = str(raw.get("string", "")).split(" ", 1)[0]
                return int(first) if first.isdigit() else None
            return int(value) if isinstance(value, int) else None
    return None


def _messages(doc: dict[str, Any]) -> list[str]:
    found = doc.get("smartctl", {}).get("messages", [])
    return [str(m.get("string", "")) for m in found if isinstance(m, dict)]


def parse_smart(device: str, doc: dict[str, Any]) -> DiskHealth:
    """One ``smartctl --json -a`` document as a ``DiskHealth``."""
    status = doc.get("smartctl", {}).get("exit_status", 0)
    status = status if isinstance(status, int) else BIT_COMMAND_LINE
    messages = _messages(doc)
    base = DiskHealth(
        device=str(doc.get("device", {}).get("name", device)),
        model=str(doc.get("model_name", "")),
        serial=str(doc.get("serial_number", "")),
        protocol=str(doc.get("device", {}).get("protocol", "")),
        exit_status=status,
    )
    if status & UNREADABLE and "smart_status" not in doc:
        asleep = any("STANDBY" in m or "SLEEP" in m for m in messages)
        problem = "" if asleep else (messages[0] if messages else f"smartctl exited {status}")
        return DiskHealth(**{**_fields(base), "asleep": asleep, "problem": problem})
    passed = doc.get("smart_status", {}).get("passed")
    table = doc.get("ata_smart_attributes", {}).get("table", [])
    nvme = doc.get("nvme_smart_health_information_log")
    temperature = doc.get("temperature", {}).get("current")
    values: dict[str, Any] = {
        "passed": passed if isinstance(passed, bool) else None,
        "temperature": temperature if isinstance(temperature, int) else _raw(table, TEMPERATURE),
    }
    if isinstance(table, list) and table:
        values |= {"reallocated": _raw(table, REALLOCATED), "pending": _raw(table, PENDING),
                   "uncorrectable": _raw(table, UNCORRECTABLE)}  # fmt: skip
    if isinstance(nvme, dict):
        values |= {"percentage_used": nvme.get("percentage_used"),
                   "critical_warning": nvme.get("critical_warning")}  # fmt: skip
        if values["temperature"] is None:
            values["temperature"] = nvme.get("temperature")
    return DiskHealth(**{**_fields(base), **values})


def _fields(health: DiskHealth) -> dict[str, Any]:
    return {name: getattr(health, name) for name in DiskHealth.__dataclass_fields__}


def scanned_devices(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, type) of each disk in a ``smartctl --json --scan`` document."""
    devices = doc.get("devices", [])
    return [
        (str(d["name"]), str(d.get("type", "")))
        for d in devices
        if isinstance(d, dict) and str(d.get("name", "")).startswith("/dev/")
    ]


def document_name(device: str) -> str:
    """Where a recorder keeps a disk's document: ``/dev/nvme0`` → ``nvme0.json``."""
    return device.removeprefix("/dev/").replace("/", "_") + ".json"


async def run_with_status(tool: str, args: list[str], limit: float) -> tuple[int, str]:
    """Run a tool from PATH (argument list, minimal environment, time limit) and return its
    exit status and output: smartctl's status is a bit mask, and it prints JSON either way.
    OSError when it cannot run or does not finish in time."""
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
    proc = await asyncio.create_subprocess_exec(
        tool, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OSError(f"{tool} timed out after {limit:g} s") from None
    return proc.returncode or 0, out.decode(errors="replace")


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        raise OSError(f"{what} is not smartctl JSON") from None
    if not isinstance(doc, dict):
        raise OSError(f"{what} is not smartctl JSON")
    return doc


class SmartctlDisks:
    """The real adapter: runs ``smartctl`` from PATH, or reads what the root recorder wrote
    into ``recorded`` (the same documents, named by ``document_name``)."""

    def __init__(self, timeout: float = 30.0, recorded: Path | None = None) -> None:
        self._timeout = timeout
        self._recorded = recorded

    async def disks(self) -> list[DiskHealth]:
        if self._recorded is not None:
            return await asyncio.to_thread(self._read_recorded, self._recorded)
        _, out = await run_with_status("smartctl", ["--json", "--scan"], self._timeout)
        found = []
        for device, kind in scanned_devices(_json(out, "smartctl --scan")):
            found.append(await self._read(device, kind))
        return found

    async def _read(self, device: str, kind: str) -> DiskHealth:
        # -n standby: a sleeping disk is not spun up every few minutes just to be read.
        args = ["--json", "-a", "-n", "standby", *(["-d", kind] if kind else []), device]
        try:
            _, out = await run_with_status("smartctl", args, self._timeout)
            return parse_smart(device, _json(out, f"smartctl {device}"))
        except OSError as exc:
            return DiskHealth(device, problem=str(exc), exit_status=BIT_OPEN_FAILED)

    @staticmethod
    def _read_recorded(folder: Path) -> list[DiskHealth]:
        scan = folder / "scan.json"
        try:
            doc = _json(scan.read_text(encoding="utf-8"), str(scan))
            age = time.time() - scan.stat().st_mtime
        except OSError as exc:
            raise OSError(f"no disk health recorded in {folder}: {exc}") from None
        stale = age if age > STALE_SECONDS else None
        found = []
        for device, _ in scanned_devices(doc):
            path = folder / document_name(device)
            try:
                health = parse_smart(device, _json(path.read_text(encoding="utf-8"), str(path)))
            except OSError as exc:
                health = DiskHealth(device, problem=str(exc), exit_status=BIT_OPEN_FAILED)
            found.append(DiskHealth(**{**_fields(health), "stale_seconds": stale}))
        return found


@dataclass
class MemoryDisks:
    """In memory, for the demo and the tests; ``down`` fails as a missing smartctl does."""

    found: list[DiskHealth] = field(default_factory=list)
    down: bool = False

    async def disks(self) -> list[DiskHealth]:
        if self.down:
            raise OSError("cannot run smartctl: No such file or directory")
        return list(self.found)

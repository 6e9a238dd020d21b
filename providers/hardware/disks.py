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
import time
from pathlib import Path
from typing import Any

from providers.hardware.base import (
    BIT_COMMAND_LINE,
    BIT_OPEN_FAILED,
    BIT_SMART_FAILED,
    DiskHealth,
)
from providers.host.base import run_with_status

UNREADABLE = BIT_COMMAND_LINE | BIT_OPEN_FAILED | BIT_SMART_FAILED
# ATA attribute ids: reallocated, current pending, offline uncorrectable, temperature.
REALLOCATED, PENDING, UNCORRECTABLE, TEMPERATURE = 5, 197, 198, 194
# Recorded documents older than this say the recorder has stopped.
STALE_SECONDS = 3 * 3600


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
        _, out, _ = await run_with_status("smartctl", ["--json", "--scan"], self._timeout)
        found = []
        for device, kind in scanned_devices(_json(out, "smartctl --scan")):
            found.append(await self._read(device, kind))
        return found

    async def _read(self, device: str, kind: str) -> DiskHealth:
        # -n standby: a sleeping disk is not spun up every few minutes just to be read.
        args = ["--json", "-a", "-n", "standby", *(["-d", kind] if kind else []), device]
        try:
            _, out, _ = await run_with_status("smartctl", args, self._timeout)
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

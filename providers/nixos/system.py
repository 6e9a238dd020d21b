"""The NixOS system itself: its generations, and whether a reboot is due.

Generations come from ``nixos-rebuild list-generations --json`` (NixOS 24.05 and later). A
reboot is due when the booted system's kernel, initrd or kernel modules differ from the current
system's: the same check NixOS users do by hand with ``readlink /run/booted-system/kernel
/run/current-system/kernel``. It reads symlinks; no subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from providers.host.base import UnitError, run_tool
from providers.nixos.base import Generation
from providers.nixos.rebuild import strip_ansi

BOOT_PARTS = ("kernel", "initrd", "kernel-modules")


class NixosRebuildSystem:
    """The real adapter. ``root`` is ``/``; tests point it at a fake tree."""

    def __init__(
        self, root: Path = Path("/"), timeout: float = 30.0, build_timeout: float = 3600.0
    ) -> None:
        self._root = root
        self._timeout = timeout
        self._build_timeout = build_timeout

    async def preview_upgrade(self, flake: str) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="steward-preview-") as work:
            await run_tool(
                "nixos-rebuild",
                ["build", "--flake", flake, "--recreate-lock-file", "--no-write-lock-file"],
                self._build_timeout,
                cwd=work,
            )
            out = await run_tool(
                "nix",
                ["--extra-experimental-features", "nix-command", "store", "diff-closures",
                 str(self._root / "run/current-system"), str(Path(work) / "result")],
                self._timeout,
            )  # fmt: skip
        return [strip_ansi(line) for line in out.splitlines() if line.strip()]

    async def generations(self) -> list[Generation]:
        out = await run_tool("nixos-rebuild", ["list-generations", "--json"], self._timeout)
        try:
            return parse_generations(out)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnitError(f"nixos-rebuild list-generations: unexpected output ({exc})") from None

    async def reboot_needed(self) -> bool | None:
        return await asyncio.to_thread(self._reboot_needed)

    def _reboot_needed(self) -> bool | None:
        booted, current = self._root / "run/booted-system", self._root / "run/current-system"
        try:
            return any(
                os.readlink(booted / part) != os.readlink(current / part) for part in BOOT_PARTS
            )
        except OSError:
            return None


def parse_generations(text: str) -> list[Generation]:
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise TypeError("expected a list")
    found = [
        Generation(
            number=int(row["generation"]),
            date=str(row.get("date", "")),
            nixos_version=str(row.get("nixosVersion", "")),
            kernel=str(row.get("kernelVersion", "")),
            current=bool(row.get("current", False)),
        )
        for row in rows
    ]
    return sorted(found, key=lambda generation: -generation.number)

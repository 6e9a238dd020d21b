"""Fake ``smartctl``, ``zpool``, ``btrfs`` and ``upsc`` for Steward's hardware tests.

Standard library only. Their data is a ``home-fakes`` folder in the first PATH entry that has
one (Steward's adapters pass only PATH to their subprocesses):

- ``smartctl/scan.json`` and ``smartctl/<device>.json`` (``/dev/nvme0`` → ``nvme0.json``):
  recorded ``smartctl --json`` documents; the fake exits with the document's own
  ``smartctl.exit_status``, as smartctl does;
- ``zpool-status.txt``: what ``zpool status -x`` prints;
- ``btrfs/<mount, / as _>.txt``: what ``btrfs device stats <mount>`` prints;
- ``upsc/<ups>.txt``: what ``upsc <ups>`` prints; a missing one fails as upsc does.

Every call is appended to ``calls.jsonl`` there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def data_dir() -> Path:
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and (Path(entry) / "home-fakes").is_dir():
            return Path(entry) / "home-fakes"
    sys.stderr.write("fake: no home-fakes folder on PATH\n")
    sys.exit(127)


def smartctl(data: Path, args: list[str]) -> int:
    if "--json" not in args:
        sys.stderr.write("fake smartctl: only --json is recorded\n")
        return 1
    if "--scan" in args:
        name = "scan.json"
    else:
        name = args[-1].removeprefix("/dev/").replace("/", "_") + ".json"
    path = data / "smartctl" / name
    if not path.exists():
        # smartctl's own answer for a device it cannot open: bit 1.
        sys.stdout.write(
            json.dumps(
                {
                    "smartctl": {
                        "exit_status": 2,
                        "messages": [
                            {
                                "string": f"{args[-1]}: Unable to detect device type",
                                "severity": "error",
                            }
                        ],
                    }
                }
            )
        )
        return 2
    text = path.read_text()
    sys.stdout.write(text)
    return int(json.loads(text).get("smartctl", {}).get("exit_status", 0))


def zpool(data: Path, args: list[str]) -> int:
    if args != ["status", "-x"]:
        sys.stderr.write("fake zpool: only `status -x` is recorded\n")
        return 2
    path = data / "zpool-status.txt"
    sys.stdout.write(path.read_text() if path.exists() else "no pools available\n")
    return 0


def btrfs(data: Path, args: list[str]) -> int:
    mount = args[-1]
    path = data / "btrfs" / f"{mount.strip('/').replace('/', '_') or '_'}.txt"
    if args[:2] != ["device", "stats"] or not path.exists():
        sys.stderr.write(f"ERROR: cannot access '{mount}': No such file or directory\n")
        return 1
    sys.stdout.write(path.read_text())
    return 0


def upsc(data: Path, args: list[str]) -> int:
    path = data / "upsc" / f"{args[0]}.txt" if args else None
    if path is None or not path.exists():
        sys.stderr.write("Error: Driver not connected\n")
        return 1
    sys.stdout.write(path.read_text())
    return 0


def main(tool: str, args: list[str]) -> int:
    data = data_dir()
    with (data / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps([tool, *args]) + "\n")
    tools = {"smartctl": smartctl, "zpool": zpool, "btrfs": btrfs, "upsc": upsc}
    return tools[tool](data, args)

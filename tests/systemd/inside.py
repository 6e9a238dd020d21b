"""Run inside the container as the ``steward`` user by tests/systemd (the root's venv Python,
the checkout on its path): the bot's own adapters against the real systemd. Each subcommand
prints one JSON object. A new process per call is what a restart of the bot is: nothing but
the JSON it was given survives."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from providers.backup.base import (
    BackupError,
    BackupProgress,
    BackupReason,
    RestoreError,
    RestorePlan,
)
from providers.backup.datajobs import UnitDataJobs
from providers.host.catalogue import ServiceCatalogue
from providers.nixos.base import RebuildRun
from providers.nixos.rebuild import SystemdRebuilds

CATALOGUE = Path("/etc/steward/catalogue.json")
JOBS = Path("/var/lib/steward-worker/jobs")


async def rebuild_start(unit: str, wanted_lines: int) -> dict[str, Any]:
    """Start and read until ``wanted_lines`` lines came (0: do not poll at all)."""
    rebuilds = SystemdRebuilds()
    run = await rebuilds.start(await rebuilds.prepare(unit))
    lines: list[str] = []
    finished = succeeded = False
    deadline = time.monotonic() + 30
    while len(lines) < wanted_lines and not finished and time.monotonic() < deadline:
        poll = await rebuilds.poll(run)
        run, finished, succeeded = poll.run, poll.finished, poll.succeeded
        lines.extend(poll.lines)
        await asyncio.sleep(0.1)
    return {"run": run.to_json(), "lines": lines, "finished": finished, "succeeded": succeeded}


async def rebuild_follow(stored: dict[str, Any]) -> dict[str, Any]:
    rebuilds = SystemdRebuilds()
    run = RebuildRun.from_json(stored)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        poll = await rebuilds.poll(run)
        run = poll.run
        lines.extend(poll.lines)
        if poll.finished:
            return {"run": run.to_json(), "lines": lines, "succeeded": poll.succeeded}
        await asyncio.sleep(0.1)
    return {"run": run.to_json(), "lines": lines, "timeout": True}


async def backup(service: str) -> dict[str, Any]:
    text = await asyncio.to_thread(CATALOGUE.read_text)
    info = ServiceCatalogue.from_json(json.loads(text))[service]
    seen: list[dict[str, Any]] = []

    async def progress(report: BackupProgress) -> None:
        seen.append({"files_done": report.files_done})

    try:
        result = await UnitDataJobs(JOBS, poll=0.05).backup(info, BackupReason.MANUAL, progress)
    except BackupError as exc:
        return {"error": str(exc)}
    return {"snapshot_id": result.snapshot_id, "files_new": result.files_new, "progress": seen}


async def restore(service: str, snapshot: str, *, foreign: bool = False) -> dict[str, Any]:
    """``foreign``: through steward-restore-foreign@, as ``steward recover`` does as root."""
    steps: list[str] = []

    async def step(text: str) -> None:
        steps.append(text)

    try:
        report = await UnitDataJobs(JOBS, poll=0.05, foreign=foreign).restore(
            RestorePlan(service, snapshot, (), ()), step
        )
    except RestoreError as exc:
        return {"error": str(exc), "kept_old": exc.kept_old}
    except BackupError as exc:
        return {"error": str(exc)}
    return {"files": report.files, "folders": list(report.folders), "steps": steps,
            "safety_snapshot": report.safety_snapshot}  # fmt: skip


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "rebuild-start":
        out = asyncio.run(rebuild_start(args[0], int(args[1])))
    elif command == "rebuild-follow":
        out = asyncio.run(rebuild_follow(json.loads(args[0])))
    elif command == "backup":
        out = asyncio.run(backup(args[0]))
    elif command in {"restore", "restore-foreign"}:
        out = asyncio.run(restore(args[0], args[1], foreign=command == "restore-foreign"))
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

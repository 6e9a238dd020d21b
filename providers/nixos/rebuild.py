"""Rebuilds run in root oneshot units that the NixOS module declares, never in the bot.

A switch may restart the bot itself, so the bot only starts ``steward-rebuild.service``,
``steward-upgrade.service`` or ``steward-rollback@N.service`` and follows the unit: its journal
for the progress lines, and ``systemctl show`` for when it is done and how it ended. Everything
needed to keep following after a restart of the bot is in ``RebuildRun``, which the caller
persists: the unit, the invocation that was there before the start, the invocation being
followed, and the journal cursor already read.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from providers.host.base import UnitError, run_tool
from providers.nixos.base import STEWARD_UNITS, RebuildPoll, RebuildRun, is_steward_unit

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_BUSY = frozenset({"activating", "deactivating", "reloading"})


def strip_ansi(line: str) -> str:
    """nix colours its output; a chat shows the escape codes as garbage."""
    return _ANSI.sub("", line)


class SystemdRebuilds:
    """The real adapter: ``systemctl`` and ``journalctl`` from PATH."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout

    async def busy(self) -> str | None:
        # One call, and the rollback template's instances are found by pattern.
        out = await run_tool(
            "systemctl",
            ["list-units", "--plain", "--no-legend", "--no-pager", "--all",
             "--state=activating,deactivating,reloading", "--", *STEWARD_UNITS,
             "steward-rollback@*.service"],
            self._timeout,
        )  # fmt: skip
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return next((name for name in names if is_steward_unit(name)), None)

    async def prepare(self, unit: str) -> RebuildRun:
        _check(unit)
        (props,) = await self._show([unit], ("Id", "ActiveState", "InvocationID"))
        _, cursor, _ = await self._journal(unit, "", last=True)
        invocation = props.get("InvocationID", "")
        if props.get("ActiveState") in _BUSY:
            return RebuildRun(unit, invocation, invocation, cursor, joined=True, started=True)
        return RebuildRun(unit, invocation, cursor=cursor)

    async def start(self, run: RebuildRun) -> RebuildRun:
        if run.started:
            return run
        await run_tool("systemctl", ["start", "--no-block", "--", run.unit], self._timeout)
        return replace(run, started=True)

    async def poll(self, run: RebuildRun) -> RebuildPoll:
        # The state first, then the journal: every line written before the end is then read.
        (props,) = await self._show([run.unit], ("ActiveState", "Result", "InvocationID"))
        lines, cursor, invocations = await self._journal(run.unit, run.cursor)
        run = replace(run, cursor=cursor or run.cursor)
        return _judge(run, props, lines, invocations)

    async def _show(self, units: list[str], props: tuple[str, ...]) -> list[dict[str, str]]:
        out = await run_tool(
            "systemctl", ["show", f"--property={','.join(props)}", "--", *units], self._timeout
        )
        blocks = [block for block in out.strip().split("\n\n") if block.strip()]
        return [dict(line.split("=", 1) for line in b.splitlines() if "=" in line) for b in blocks]

    async def _journal(
        self, unit: str, cursor: str, *, last: bool = False
    ) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        args = ["--unit", unit, "--output", "json", "--no-pager", "--quiet"]
        if last:
            args += ["--lines", "1"]
        elif cursor:
            args += ["--after-cursor", cursor]
        else:
            args += ["--lines", "500"]
        out = await run_tool("journalctl", args, self._timeout)
        return _parse_journal(out)


def _check(unit: str) -> None:
    if not is_steward_unit(unit):
        raise UnitError(f"{unit} is not one of Steward's rebuild units")


def _judge(
    run: RebuildRun,
    props: dict[str, str],
    lines: tuple[str, ...],
    invocations: tuple[str, ...] = (),
) -> RebuildPoll:
    invocation = props.get("InvocationID", "")
    state = props.get("ActiveState", "")
    if not run.run_id and invocation and invocation != run.before_id:
        run = replace(run, run_id=invocation)
    if not run.run_id:
        # A run that succeeded before the first poll (the bot was restarting) is gone from
        # `systemctl show`: systemd unloads a finished oneshot, and its InvocationID reads "".
        # The journal lines read since the start still carry the run's invocation.
        begun = next((found for found in invocations if found != run.before_id), "")
        if begun:
            run = replace(run, run_id=begun)
    if not run.run_id:
        return RebuildPoll(run, lines, finished=False, succeeded=False)
    if invocation != run.run_id:
        # A newer run of the unit has begun since: ours ended, and how is in its lines.
        failed = any(line.startswith("Failed to start") for line in lines)
        return RebuildPoll(run, lines, finished=True, succeeded=not failed)
    finished = state not in _BUSY
    succeeded = finished and state != "failed" and props.get("Result", "success") == "success"
    return RebuildPoll(run, lines, finished=finished, succeeded=succeeded)


def parse_journal_json(text: str) -> tuple[tuple[str, ...], str]:
    """``journalctl -o json``: one object per line. MESSAGE is a string, or a list of bytes
    when it was not valid UTF-8. Returns the messages and the last cursor."""
    lines, cursor, _ = _parse_journal(text)
    return lines, cursor


def _parse_journal(text: str) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """As parse_journal_json, and the invocation IDs of the entries, in order: the unit's own
    output has ``_SYSTEMD_INVOCATION_ID``, systemd's lines about it ``INVOCATION_ID``."""
    lines: list[str] = []
    invocations: list[str] = []
    cursor = ""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):
            message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode(
                errors="replace"
            )
        lines.append(strip_ansi(str(message)))
        cursor = str(entry.get("__CURSOR", cursor))
        invocation = entry.get("_SYSTEMD_INVOCATION_ID") or entry.get("INVOCATION_ID")
        if isinstance(invocation, str) and invocation not in invocations:
            invocations.append(invocation)
    return tuple(lines), cursor, tuple(invocations)

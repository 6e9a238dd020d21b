"""``steward console --demo --fleet N``: N demo servers answering in one console, as N
Stewards in one chat would. Each has its own name, database and demo server; every line goes
to each of them in name order, and a press goes to the one that asked last."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import TextIO

from bot.app import App, build_app
from bot.config import ConfigError, Settings
from bot.transports.console import CHAT, TRANSPORT, ConsoleTransport, settle, stdin_lines

NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


def fleet_apps(settings: Settings, size: int) -> list[tuple[App, ConsoleTransport]]:
    if not 2 <= size <= len(NAMES):
        raise ConfigError(f"--fleet takes 2 to {len(NAMES)} servers, not {size}.")
    made = []
    for name in NAMES[:size]:
        own = replace(settings, name=name, state_dir=settings.state_dir / name, database_url=None)
        own.state_dir.mkdir(parents=True, exist_ok=True)
        app = build_app(own, demo=True, console_admin=True)
        console = ConsoleTransport(server=name)
        app.router.add(TRANSPORT, console)
        made.append((app, console))
    introduce([app for app, _ in made])
    return made


def introduce(apps: list[App]) -> None:
    """In one process they hear each other at once: each knows the others are here."""
    now = datetime.now(UTC)
    for app in apps:
        fleet = app.engine.deps.fleet
        for other in apps:
            them = other.engine.deps.fleet
            if fleet is not None and them is not None and them is not fleet:
                fleet.saw(CHAT, them.name, them.me, now)


async def run_fleet(apps: list[tuple[App, ConsoleTransport]], stdin: TextIO | None = None) -> int:
    asked = apps[0]
    async for line in stdin_lines(stdin or sys.stdin):
        if line.strip().lower().startswith("press"):
            await asked[1].handle_line(asked[0].engine, line)
            continue
        for app, console in apps:  # in name order: the answers read as one table
            before = console.newest_buttons
            await console.handle_line(app.engine, line)
            if console.newest_buttons > before:
                asked = (app, console)
        introduce([app for app, _ in apps])  # each answer is a sign of life
    for app, console in apps:
        if not await settle(app.engine, 60):
            console.say("Some jobs are still running after 60 s; they go on next start.")
    return 0

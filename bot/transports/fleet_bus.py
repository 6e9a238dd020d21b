"""What every transport's fleet does the same way: answers in name order, the open alerts its
signature announces, and the watch on another Steward's heartbeat.

A command that names no Steward is answered by each, in name order: a Steward first waits,
bounded, until the live Stewards whose names sort before its own have answered that command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from handlers.alert_rules import Level
from handlers.alerts import alert_states
from handlers.core.fleet import Fleet
from handlers.core.messages import ChatRef
from handlers.fleet import HeartbeatWatch

if TYPE_CHECKING:
    from handlers.core.engine import Engine

log = logging.getLogger(__name__)
TURN_WAIT = 5.0  # the longest a Steward waits for the ones before it to answer
_REMEMBERED = 200  # commands whose answers are remembered, for the ones still waiting


class FleetBus:
    def __init__(self, engine: Engine, fleet: Fleet, watch: str | None = None) -> None:
        self.engine = engine
        self.fleet = fleet
        self.watch = HeartbeatWatch(fleet, watch, datetime.now(UTC)) if watch else None
        self._answers: dict[str, set[str]] = {}
        self._answered = asyncio.Event()

    def answered(self, command_id: str, name: str) -> None:
        """The Steward ``name`` answered the command ``command_id`` (a message or event id)."""
        self._answers.setdefault(command_id, set()).add(name)
        while len(self._answers) > _REMEMBERED:
            del self._answers[next(iter(self._answers))]
        self._answered.set()
        self._answered = asyncio.Event()

    async def wait_turn(self, chat: ChatRef, command_id: str) -> None:
        """Until the Stewards before this one have answered ``command_id``, at most TURN_WAIT."""
        before = {p.name for p in self.fleet.before_me(chat, datetime.now(UTC))}
        deadline = time.monotonic() + TURN_WAIT
        while before - self._answers.get(command_id, set()):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(before - self._answers.get(command_id, set()))
                log.info("%s: answering without waiting longer for %s", chat.transport,
                         ", ".join(missing))  # fmt: skip
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), left)

    async def refresh(self) -> None:
        """The open alerts the signature announces."""
        try:
            states = await alert_states(self.engine.deps)
        except Exception:
            log.exception("could not count the open alerts")
            return
        self.fleet.with_alerts(sum(1 for s in states if s.level is not Level.OK))

    async def check_watch(self) -> None:
        if self.watch is None:
            return
        notice = self.watch.check(datetime.now(UTC))
        if notice is not None:
            await self.engine.alert(notice)

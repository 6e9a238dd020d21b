"""Several Stewards in one Matrix room: the room is the shared bus.

Every message a Steward sends carries its signature (``org.steward.fleet`` in the content:
name, version, heartbeat interval, open alerts), so each Steward learns the others from what
they say; there is no registry. A Steward says hello (an ``org.steward.heartbeat`` event, which
clients do not show) in its admin rooms when it starts, answers a newcomer's hello once, and
beats in the rooms it shares with others. A bot alone in its rooms sends nothing more than the
one hello per start, and never waits. Answers in name order and the watch: ``FleetBus``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bot.transports.fleet_bus import FleetBus
from handlers.core.fleet import FLEET_KEY, Signature
from handlers.core.messages import ChatRef

log = logging.getLogger(__name__)
TRANSPORT = "matrix"
HEARTBEAT = "org.steward.heartbeat"


class MatrixFleet(FleetBus):
    def signature(self) -> dict[str, object]:
        return self.fleet.me.as_json()

    # -- what the others say ----------------------------------------------------------------

    def observe(self, room_id: str, event: Any) -> tuple[bool, bool]:
        """(a Steward sent it, it was a hello from a Steward new here)."""
        content = event.source.get("content", {})
        signature = Signature.from_json(content.get(FLEET_KEY))
        if signature is None:
            return False, False
        chat = ChatRef(TRANSPORT, room_id)
        new = self.fleet.saw(chat, event.sender, signature, _moment(event.server_timestamp))
        replied = content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        if isinstance(replied, str):
            self.answered(replied, signature.name)
        return True, new and bool(content.get("hello"))

    def left(self, room_id: str, user_id: str) -> None:
        self.fleet.left(ChatRef(TRANSPORT, room_id), user_id)

    # -- what this Steward says -------------------------------------------------------------

    def heartbeat(self, *, hello: bool = False) -> dict[str, object]:
        content: dict[str, object] = {FLEET_KEY: self.signature()}
        if hello:
            content["hello"] = True
        return content

    def shared_rooms(self) -> list[str]:
        peers = self.fleet.peers.values()
        rooms = {peer.chat.chat_id for peer in peers if peer.chat.transport == TRANSPORT}
        return sorted(rooms)


def _moment(server_timestamp: int) -> datetime:
    return datetime.fromtimestamp(server_timestamp / 1000, UTC)


Send = Callable[[str, str, dict[str, Any]], Awaitable[str]]


async def say_hello(fleet: MatrixFleet, rooms: list[str], send: Send) -> None:
    """Once per start, in the admin rooms: the other Stewards there learn of this one."""
    await fleet.refresh()
    for room in rooms:
        await _beat(room, fleet.heartbeat(hello=True), send)


async def beat_forever(fleet: MatrixFleet, send: Send) -> None:
    """A sign of life a little more often than the interval announced, in shared rooms only."""
    period = max(0.5, fleet.fleet.me.heartbeat_seconds * 2 / 3)
    while True:
        await asyncio.sleep(period)
        await fleet.refresh()
        for room in fleet.shared_rooms():
            await _beat(room, fleet.heartbeat(), send)
        await fleet.check_watch()


async def _beat(room: str, content: dict[str, Any], send: Send) -> None:
    try:
        await send(room, HEARTBEAT, content)
    except Exception as exc:  # noqa: BLE001 - the next beat tries again
        log.warning("Matrix: no heartbeat in %s: %s", room, exc)


async def say_hello_back(room: str, content: dict[str, Any], send: Send) -> None:
    """A newcomer said hello: it learns of this Steward now, not a heartbeat later."""
    await _beat(room, content, send)

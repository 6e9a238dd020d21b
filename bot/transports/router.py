"""Sends each reply through the transport its chat belongs to."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from handlers.core.messages import ChatRef, MessageRef, Reply

if TYPE_CHECKING:
    from handlers.core.progress import Outbox

log = logging.getLogger(__name__)


class TransportUnavailableError(Exception):
    pass


class OutboxRouter:
    def __init__(self) -> None:
        self._outboxes: dict[str, Outbox] = {}

    def add(self, transport: str, outbox: Outbox) -> None:
        self._outboxes[transport] = outbox

    def _for(self, chat: ChatRef) -> Outbox:
        outbox = self._outboxes.get(chat.transport)
        if outbox is None:
            raise TransportUnavailableError(f"the {chat.transport} transport is not running")
        return outbox

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        return await self._for(chat).send(chat, reply, reply_to)

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        await self._for(ref.chat).edit(ref, reply)

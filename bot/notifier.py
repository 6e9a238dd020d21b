"""Delivers a Reply to subscribed chats on every running transport."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from handlers.core.messages import ChatRef, Reply
from handlers.core.progress import Outbox

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, outbox: Outbox, chats: Iterable[ChatRef]) -> None:
        self._outbox = outbox
        self.chats = tuple(chats)

    async def notify(self, reply: Reply) -> int:
        """Send to every chat; one unreachable chat never stops the others."""
        delivered = 0
        for chat in self.chats:
            try:
                await self._outbox.send(chat, reply)
            except Exception as exc:  # noqa: BLE001 - logged, and the next chat still gets it
                log.warning("could not notify %s:%s: %s", chat.transport, chat.chat_id, exc)
            else:
                delivered += 1
        return delivered

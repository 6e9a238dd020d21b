"""Delivers a Reply to the admins' chats on every running transport."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from handlers.core.messages import ChatRef, Reply, esc

if TYPE_CHECKING:
    from handlers.core.progress import Outbox

log = logging.getLogger(__name__)

ChatSource = Callable[[], Iterable[ChatRef]]


class Notifier:
    """``chats`` are known up front (an admin's private chat on Telegram); a source is asked
    at each notice (the Matrix rooms an admin is in right now)."""

    def __init__(self, outbox: Outbox, chats: Iterable[ChatRef] = (), name: str = "") -> None:
        self._outbox = outbox
        self._chats = tuple(chats)
        # Reports and alerts say which server they come from: several may share a chat.
        self._head = f"🖥 <b>{esc(name)}</b> · " if name else ""
        self._sources: list[ChatSource] = []

    def add_source(self, source: ChatSource) -> None:
        self._sources.append(source)

    @property
    def chats(self) -> tuple[ChatRef, ...]:
        found = list(self._chats)
        for source in self._sources:
            found.extend(chat for chat in source() if chat not in found)
        return tuple(found)

    async def notify(self, reply: Reply) -> int:
        """Send to every admin chat; one unreachable chat never stops the others."""
        return await self.send_to(self.chats, reply)

    async def send_to(self, chats: Iterable[ChatRef], reply: Reply) -> int:
        reply = replace(reply, text=self._head + reply.text)
        delivered = 0
        for chat in chats:
            try:
                await self._outbox.send(chat, reply)
            except Exception as exc:  # noqa: BLE001 - logged, and the next chat still gets it
                log.warning("could not notify %s:%s: %s", chat.transport, chat.chat_id, exc)
            else:
                delivered += 1
        return delivered

"""One message that is edited in place as work goes on, at most once per interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from handlers.core.messages import ChatRef, MessageRef, Reply

if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class Outbox(Protocol):
        """What a transport offers the core. ``edit`` treats "not modified" as success."""

        async def send(
            self, chat: ChatRef, reply: Reply, reply_to: str | None = None
        ) -> MessageRef: ...

        async def edit(self, ref: MessageRef, reply: Reply) -> None: ...

    class Progress(Protocol):
        async def update(self, text: str) -> None: ...


class NoProgress:
    async def update(self, text: str) -> None:
        return None


class ThrottledMessage:
    """Sends the first text at once, then edits at most every ``interval`` seconds.

    Updates that arrive in between are coalesced: only the newest is shown. ``finish`` waits
    out the interval too, so the chat never sees two edits closer than ``interval``.
    """

    def __init__(
        self,
        outbox: Outbox,
        chat: ChatRef,
        *,
        interval: float = 2.0,
        reply_to: str | None = None,
        on_sent: Callable[[MessageRef], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._chat = chat
        self._interval = interval
        self._reply_to = reply_to
        self._on_sent = on_sent
        self._clock = clock
        self._ref: MessageRef | None = None
        self._last_at = 0.0
        self._pending: Reply | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.edits = 0

    @property
    def ref(self) -> MessageRef | None:
        return self._ref

    def adopt(self, ref: MessageRef) -> None:
        """Continue editing a message sent earlier (a job re-attached after a restart)."""
        self._ref = ref

    async def update(self, text: str) -> None:
        await self.show(Reply(text, silent=True))

    async def show(self, reply: Reply) -> None:
        if self._ref is None:
            async with self._lock:
                await self._send_first(reply)
            return
        self._pending = reply
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def finish(self, reply: Reply) -> MessageRef:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._pending = None
        if self._ref is None or reply.attachments:
            # Files cannot be edited into a text message: the outcome goes as a new one.
            return await self._outbox.send(self._chat, reply, self._reply_to)
        async with self._lock:
            await self._wait_interval()
            await self._edit(reply)
        return self._ref

    async def _send_first(self, reply: Reply) -> None:
        if self._ref is not None:
            self._pending = reply
            return
        self._ref = await self._outbox.send(self._chat, reply, self._reply_to)
        self._last_at = self._clock()
        if self._on_sent is not None:
            await self._on_sent(self._ref)

    async def _flush_later(self) -> None:
        async with self._lock:
            await self._wait_interval()
            if self._pending is not None:
                reply, self._pending = self._pending, None
                await self._edit(reply)

    async def _wait_interval(self) -> None:
        delay = self._last_at + self._interval - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _edit(self, reply: Reply) -> None:
        assert self._ref is not None  # noqa: S101 - callers send first
        await self._outbox.edit(self._ref, reply)
        self._last_at = self._clock()
        self.edits += 1

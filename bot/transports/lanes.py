"""Turn-taking per chat: in order within a chat, concurrent across chats."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class _Lane:
    """One chat's lock, and how many of its updates are queued or running."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ChatLanes:
    """A reply never overtakes its question.

    Each chat has a FIFO lock (asyncio.Lock wakes waiters in order and lets no newcomer barge
    in), dropped when no update of that chat is queued or running. Callers must enter in the
    order the updates arrived: tasks created in that order do."""

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane] = {}

    async def run(self, key: Hashable, work: Awaitable[T]) -> T:
        lane = self._lanes.setdefault(key, _Lane())
        lane.users += 1
        try:
            async with lane.lock:
                return await work
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    def __len__(self) -> int:
        return len(self._lanes)

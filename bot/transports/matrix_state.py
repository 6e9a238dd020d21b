"""What the Matrix transport keeps in the bot's database, under one key prefix.

- the login (user, device, access token), so that a start does not make a new device;
- ``next_batch``, so that a restart resumes where the last sync ended (nio stores it only when
  encryption is on);
- the event ids already acted on, so that a re-delivered sync never runs a command twice;
- the confirmation prompts: which reactions and which ``!confirm CODE`` stand for which button.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from values import value

PREFIX = "matrix:"
SESSION = f"{PREFIX}session"
NEXT_BATCH = f"{PREFIX}next_batch"
SEEN = f"{PREFIX}seen:"
CODE = f"{PREFIX}code:"
PROMPT = f"{PREFIX}prompt:"
# Confirmations live an hour at most, and a sync token is never older than the last sync.
KEEP_FOR = timedelta(days=2)


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class KeyValue(Protocol):
        async def get(self, key: str) -> str | None: ...

        async def set(self, key: str, value: str, now: datetime) -> None: ...

        async def add(self, key: str, value: str, now: datetime) -> bool:
            """Insert unless the key exists; True when this call inserted it."""
            ...

        async def delete(self, key: str) -> None: ...

        async def purge(self, prefix: str, before: datetime) -> int: ...


@value
class Session:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str


@value
class Prompt:
    """A confirmation prompt: the room, its code, what ✅ and ❌ stand for, and the bot's own
    reactions (redacted when the prompt is closed)."""

    room_id: str
    code: str
    confirm: str
    cancel: str
    reactions: tuple[str, ...] = ()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MatrixState:
    def __init__(self, kv: KeyValue, clock: Callable[[], datetime] = _utcnow) -> None:
        self._kv = kv
        self._clock = clock

    @property
    def kv(self) -> KeyValue:
        return self._kv

    async def session(self) -> Session | None:
        raw = await self._kv.get(SESSION)
        if raw is None:
            return None
        try:
            return Session(**json.loads(raw))
        except (ValueError, TypeError):
            return None  # unreadable: log in again, which writes a good one

    async def save_session(self, session: Session) -> None:
        await self._kv.set(SESSION, json.dumps(asdict(session)), self._clock())

    async def forget_session(self) -> None:
        await self._kv.delete(SESSION)

    async def next_batch(self) -> str | None:
        return await self._kv.get(NEXT_BATCH)

    async def save_next_batch(self, token: str) -> None:
        await self._kv.set(NEXT_BATCH, token, self._clock())

    async def first_sight(self, event_id: str) -> bool:
        """Claim an event before acting on it: True only the first time, across restarts."""
        return await self._kv.add(SEEN + event_id, "", self._clock())

    async def reserve_code(self, code: str) -> bool:
        return await self._kv.add(CODE + code, "", self._clock())

    async def save_prompt(self, event_id: str, prompt: Prompt) -> None:
        now = self._clock()
        await self._kv.set(PROMPT + event_id, json.dumps(asdict(prompt)), now)
        await self._kv.set(CODE + prompt.code, event_id, now)

    async def prompt(self, event_id: str) -> Prompt | None:
        raw = await self._kv.get(PROMPT + event_id)
        if raw is None:
            return None
        data = json.loads(raw)
        data["reactions"] = tuple(data.get("reactions", ()))
        return Prompt(**data)

    async def prompt_by_code(self, code: str) -> tuple[str, Prompt] | None:
        event_id = await self._kv.get(CODE + code.upper())
        if not event_id:
            return None
        prompt = await self.prompt(event_id)
        return None if prompt is None else (event_id, prompt)

    async def forget_prompt(self, event_id: str, prompt: Prompt) -> None:
        await self._kv.delete(CODE + prompt.code)
        await self._kv.delete(PROMPT + event_id)

    async def tidy(self) -> int:
        """Drop what can no longer matter: old claims and the codes of long-gone prompts."""
        before = self._clock() - KEEP_FOR
        return sum([
            await self._kv.purge(SEEN, before),
            await self._kv.purge(CODE, before),
            await self._kv.purge(PROMPT, before),
        ])  # fmt: skip

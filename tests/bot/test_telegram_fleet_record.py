"""The record of a Steward's heartbeats standing in a Telegram group, across a restart.

A real engine and key-value table on SQLite, the loopback Bot API, and the fleet's own code;
only the read of the record is held back, as a slow disk or a busy database thread would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from telegram import Bot, Chat, Message, User

from bot.errors import DatabaseError
from bot.transports.telegram_fleet import KEY, TelegramFleet
from bot.transports.telegram_outbox import TelegramOutbox
from handlers.core.fleet import Fleet, Signature
from handlers.core.messages import ChatRef, Reply
from tests.conftest import Harness
from tests.support.engine_probe import engine_with
from tests.support.fake_telegram import FakeBotAPI

if TYPE_CHECKING:
    from handlers.core.records import Notes

GROUP = -1001234567890
TOKEN = "7312045102:AAHx9fE2e-TestOnly_Q3zLmNp7rStUvWxYzB"


class WatchedNotes:
    """The real key-value store, telling the test when it was written."""

    def __init__(self, inner: Notes) -> None:
        self.inner = inner
        self.written = asyncio.Event()

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)

    async def set(self, key: str, value: str, when: datetime) -> None:
        await self.inner.set(key, value, when)
        self.written.set()

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)


class HeldRead(WatchedNotes):
    """The real store, whose reads wait until the test lets them go."""

    def __init__(self, inner: Notes) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()

    async def get(self, key: str) -> str | None:
        await self.release.wait()
        return await self.inner.get(key)


def newcomer_beat() -> Message:
    """Another Steward's heartbeat, as the transport hands it to the fleet."""
    alpha = Signature("alpha", "1.0.0", 3)
    return Message(
        message_id=900,
        date=datetime.now(UTC),
        chat=Chat(GROUP, Chat.SUPERGROUP, title="Servers"),
        from_user=User(7312045101, "alpha", is_bot=True, username="alpha_steward_bot"),
        text=alpha.as_line(),
    )


async def test_a_beat_that_comes_before_the_record_is_read_does_not_lose_an_old_one(
    harness: Harness,
) -> None:
    """Updates flow as soon as polling starts; the record is read a moment later. A newcomer's
    beat handled in between must not make this run forget the beat the last run left."""
    with FakeBotAPI(TOKEN, username="bravo_steward_bot") as fake:
        fake.add_chat(GROUP, "supergroup", "Servers")
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            outbox = TelegramOutbox(bot)
            me = Signature("bravo", "1.0.0", 3)
            # The last run's beat, still standing, and its record.
            old = await outbox.send(ChatRef("telegram", str(GROUP)), Reply(me.as_line()))
            await harness.engine.deps.notes.set(
                KEY, json.dumps({str(GROUP): [old.message_id]}), datetime.now(UTC)
            )
            notes = HeldRead(harness.engine.deps.notes)
            fleet = TelegramFleet(engine_with(harness, notes=notes), Fleet(me), outbox)

            fleet.observe(newcomer_beat())  # before start: the record is not read yet
            starting = asyncio.create_task(fleet.start())
            # Give a beat that does not wait for the record time to send and save.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notes.written.wait(), 1.0)
            notes.release.set()
            await starting

            def tidy(f: FakeBotAPI) -> list[int]:
                standing = [m.message_id for m in f.messages(GROUP) if not m.deleted]
                return standing if len(standing) == 1 and f.message(
                    GROUP, int(old.message_id)
                ).deleted else []  # fmt: skip

            try:
                (newest,) = await fake.wait_for_async(tidy, timeout=10)
            finally:
                await fleet.stop()
    assert newest > int(old.message_id)
    record = json.loads(await harness.engine.deps.notes.get(KEY) or "{}")
    assert old.message_id not in record[str(GROUP)]


class BrokenRead(WatchedNotes):
    """The real store, whose reads fail as a database that is down does."""

    async def get(self, key: str) -> str | None:
        raise DatabaseError("the database is down")


async def test_a_record_that_cannot_be_read_sends_no_beat_in_this_run(harness: Harness) -> None:
    """A beat sent without the record would be saved over it: the old beats would stand for
    good. So a run that cannot read it sends none, and says so once."""
    with FakeBotAPI(TOKEN, username="bravo_steward_bot") as fake:
        fake.add_chat(GROUP, "supergroup", "Servers")
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            notes = BrokenRead(harness.engine.deps.notes)
            fleet = TelegramFleet(
                engine_with(harness, notes=notes), Fleet(Signature("bravo", "1.0.0", 3)),
                TelegramOutbox(bot), introduce=True,
            )  # fmt: skip
            fleet.observe(newcomer_beat())
            fleet.in_group(str(GROUP))
            with pytest.raises(DatabaseError):
                await fleet.start()
            # Time for a beat that does not wait for the record to go out.
            with contextlib.suppress(AssertionError):
                await fake.wait_for_async(lambda f: f.calls_to("sendMessage"), timeout=1.0)
            await fleet.stop()  # the waiting beats wake, see the stop, and send nothing
    assert fake.calls_to("sendMessage") == []
    assert not notes.written.is_set()

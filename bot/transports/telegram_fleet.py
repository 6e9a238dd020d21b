"""Several Stewards in one Telegram group, one bot per server.

Telegram passes one bot's messages to another only in Bot-to-Bot Communication Mode
(https://core.telegram.org/api/bots/bot-to-bot), turned on for each bot in @BotFather: a bot
with the mode that is an admin of the group, or has privacy mode off, receives the other bots'
messages there. Without it a Steward sees only people, and /fleet says how to turn it on.

A Telegram message carries nothing but what people see, so a Steward's heartbeat is a short
silent message whose text is its signature (``Signature.as_line``). Each beat deletes the one
before it: the group shows one line per Steward. Any other message from a known Steward's bot is
a sign of life too, and its reply to a command tells the others that it has answered.

A bot's message is only observed, never run as a command: Stewards do not command each other,
so two bots can never start a loop.

Where it beats: a Steward that has a name of its own (STEWARD_NAME) or watches another says
hello (one beat) in a group the first time it sees that group in a run; any Steward says hello
at start in the groups where it met others before (kept in the key-value table, with its beats
still standing there, so that a restart finds them and deletes its old beats), and answers a
newcomer's beat with one of its own. It keeps beating only where it has seen another Steward;
a hello left alone is deleted at the next beat. A Steward alone in its groups, as most are,
never beats.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from telegram import Message
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.transports.fleet_bus import FleetBus
from bot.transports.telegram_outbox import TRANSPORT, TelegramOutbox
from handlers.core.fleet import Fleet, Signature
from handlers.core.messages import ChatRef, Reply, esc

if TYPE_CHECKING:
    from handlers.core.engine import Engine

log = logging.getLogger(__name__)
STOP_WAIT = 5.0
KEY = "telegram.fleet"  # {group id: this Steward's beats still standing there, newest last}


class TelegramFleet(FleetBus):
    def __init__(
        self,
        engine: Engine,
        fleet: Fleet,
        outbox: TelegramOutbox,
        watch: str | None = None,
        *,
        introduce: bool = False,
    ) -> None:
        super().__init__(engine, fleet, watch)
        self.outbox = outbox
        self.introduce = introduce
        self._beats: dict[str, list[str]] = {}
        self._greeted: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False
        # Set once the record of standing beats is loaded (or the fleet stops): updates flow
        # before that, and a beat sent then would be saved over the record, which the load
        # then overwrote in turn; an old beat was left standing with no run knowing of it.
        self._ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Hello in the groups met before, then a beat every two thirds of the interval."""
        self._beats = await self._load()
        self._ready.set()
        for chat_id in list(self._beats):
            self._greet(chat_id)
        self._ticker = self._spawn(self._beat_forever())

    async def stop(self) -> None:
        """A beat in flight may finish (at most STOP_WAIT): stopped between its send and its
        save, it would stay in the group with no run knowing of it. No beat starts after this:
        updates still handled while the transport stops (a newcomer's beat) send nothing."""
        self._stopping = True
        self._ready.set()  # a beat still waiting for the record sees the stop and sends nothing
        if self._ticker is not None:
            self._ticker.cancel()
        working = [task for task in self._tasks if task is not self._ticker]
        if working:
            await asyncio.wait(working, timeout=STOP_WAIT)
        for task in list(self._tasks):
            task.cancel()

    # -- what the others say ------------------------------------------------------------------

    def in_group(self, chat_id: str) -> None:
        """A message in a group: the first one of this run there brings a hello."""
        if self.introduce:
            self._greet(chat_id)

    def _greet(self, chat_id: str) -> None:
        if chat_id not in self._greeted:
            self._greeted.add(chat_id)
            self._spawn(self._hello(chat_id))

    async def _hello(self, chat_id: str) -> None:
        await self.refresh()
        await self.beat(chat_id)

    def observe(self, message: Message) -> None:
        """Learn from a bot's message in a group; never more than that."""
        sender = message.from_user
        if sender is None or not sender.is_bot:
            return
        chat = ChatRef(TRANSPORT, str(message.chat.id))
        account = (sender.username or str(sender.id)).lower()
        when = _aware(message.date)
        signature = Signature.from_line(message.text or "")
        if signature is not None:
            if self.fleet.saw(chat, account, signature, when):
                self._spawn(self.beat(chat.chat_id))  # the newcomer learns of us at once
            name: str | None = signature.name
        else:
            peer = self.fleet.heard(chat, account, when)
            name = peer.name if peer is not None else None
        replied = message.reply_to_message
        if name is not None and replied is not None:
            self.answered(str(replied.message_id), name)

    # -- what this Steward says ---------------------------------------------------------------

    async def beat(self, chat_id: str) -> None:
        """Post a beat in the group, then delete the ones before (normally one; more when a
        run ended between a beat and that deletion)."""
        await self._ready.wait()
        async with self._locks.setdefault(chat_id, asyncio.Lock()):
            if self._stopping:
                return
            reply = Reply(esc(self.fleet.me.as_line()), silent=True)
            try:
                sent = await self.outbox.send(ChatRef(TRANSPORT, chat_id), reply)
            except TelegramError as exc:
                log.warning("Telegram: no heartbeat in %s: %s", chat_id, exc)
                return
            standing = [*self._beats.get(chat_id, []), sent.message_id]
            self._beats[chat_id] = standing
            await self._save()
            await self._clear(chat_id, standing[:-1])

    async def _retire(self, chat_id: str) -> None:
        """Alone in the group: its beats go, and it beats there no more for now."""
        await self._ready.wait()
        async with self._locks.setdefault(chat_id, asyncio.Lock()):
            if not self._stopping:
                await self._clear(chat_id, self._beats.get(chat_id, []))

    async def _clear(self, chat_id: str, old: list[str]) -> None:
        """Delete old beats. One that is gone already, or that a bot may no longer delete (a
        refusal), leaves the record; one that met a passing error (network, flood wait) stays
        on it, for the next beat to try again."""
        if not old:
            return
        done: set[str] = set()
        for message_id in old:
            try:
                await self._delete(int(chat_id), int(message_id))
            except (BadRequest, Forbidden) as exc:  # gone already, or too old to delete
                log.info("Telegram: could not delete an old heartbeat in %s: %s", chat_id, exc)
            except TelegramError as exc:
                log.warning("Telegram: an old heartbeat in %s stays for now: %s", chat_id, exc)
                continue
            done.add(message_id)
        self._beats[chat_id] = [m for m in self._beats.get(chat_id, []) if m not in done]
        await self._save()

    async def _beat_forever(self) -> None:
        period = max(0.5, self.fleet.me.heartbeat_seconds * 2 / 3)
        while True:
            await asyncio.sleep(period)
            peers = self.fleet.peers.values()
            shared = {p.chat.chat_id for p in peers if p.chat.transport == TRANSPORT}
            if shared & self._beats.keys():
                await self.refresh()  # only a Steward with others to tell counts its alerts
            # Each as a task of its own, which a stop lets finish (see stop).
            work = [
                self._spawn(self.beat(chat_id) if chat_id in shared else self._retire(chat_id))
                for chat_id in list(self._beats)
            ]
            if work:
                await asyncio.wait(work)
            await self.check_watch()

    async def _delete(self, chat_id: int, message_id: int) -> None:
        bot = self.outbox.bot
        await self.outbox.call("deleteMessage", lambda: bot.delete_message(chat_id, message_id))

    # -- the groups met before ----------------------------------------------------------------

    async def _load(self) -> dict[str, list[str]]:
        raw = await self.engine.deps.notes.get(KEY)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning("Telegram: the stored fleet groups are unreadable; starting afresh")
            return {}
        return {
            str(chat): [str(m) for m in beats if str(m).isdigit()]
            for chat, beats in data.items()
            if str(chat).lstrip("-").isdigit() and isinstance(beats, list)
        }

    async def _save(self) -> None:
        await self.engine.deps.notes.set(KEY, json.dumps(self._beats), datetime.now(UTC))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""One Telegram supergroup shared by several bots, each served by its own ``FakeBotAPI``.

Each bot sees the group through its own fake (its own token, updates and messages), as on
Telegram; the group numbers the messages (a supergroup counts its own message ids, the same
for every member) and decides who receives what, following the public documentation:

- People's messages, by Group Privacy Mode (https://core.telegram.org/bots/features#privacy-mode):
  a bot that is an admin of the group, or has privacy mode off, receives every message. Other
  bots receive commands meant for them explicitly (``/command@this_bot``), general commands when
  they were the last bot to post in the group, replies to their messages and messages that
  mention them.
- Bots' messages, by Bot-to-Bot Communication (https://core.telegram.org/api/bots/bot-to-bot).
  Without it "bots will not be able to see messages from other bots regardless of mode" (Bot
  FAQ). With it, a bot receives another bot's message that contains a command mention
  addressed to it (``/command@TargetBot``) or is a direct reply to one of its messages, when at
  least one of the two bots has the mode on; and a bot that has the mode on also receives the
  other bots' messages without mention or reply when it is an admin in the group or has privacy
  mode off. The page lists those two conditions as bullets, with no "and" between them; the
  fake takes either, as privacy mode itself does for people's messages.

A button press still reaches only the bot whose message carries the button: ``press`` on that
bot's own fake.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass

from tests.support.fake_telegram import JSON, FakeBotAPI, detect_entities


@dataclass
class Member:
    fake: FakeBotAPI
    admin: bool = False

    @property
    def username(self) -> str:
        return self.fake.username.lower()

    @property
    def sees_everything(self) -> bool:
        return self.admin or not self.fake.privacy_mode


class FakeGroup:
    def __init__(self, chat_id: int, title: str = "Servers") -> None:
        self.chat: JSON = {"id": chat_id, "type": "supergroup", "title": title}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._members: dict[str, Member] = {}
        self._history: dict[int, JSON] = {}
        self._last_bot: str | None = None
        self._deliveries: list[tuple[str, str, JSON]] = []

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    def add(self, fake: FakeBotAPI, *, admin: bool = False) -> None:
        """The bot joins the group (``admin``: it is made an admin, with no particular rights)."""
        with self._lock:
            self._members[fake.username.lower()] = Member(fake, admin)
        fake.join(self, self.chat)

    def member(self, fake: FakeBotAPI) -> Member:
        with self._lock:
            return self._members[fake.username.lower()]

    # -- what people do -------------------------------------------------------------------

    def say(self, user: JSON, text: str, *, reply_to: int | None = None) -> JSON:
        """A person writes in the group; each bot that may receive it gets an Update."""
        message: JSON = {
            "message_id": self.next_message_id(),
            "from": copy.deepcopy(user),
            "chat": copy.deepcopy(self.chat),
            "date": int(time.time()),
            "text": text,
        }
        if entities := detect_entities(text):
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._replied(reply_to)
        self._remember(message)
        for member in self.members():
            member.fake.receive(message, deliver=self.sees_person(member, message))
        return copy.deepcopy(message)

    # -- what the bots do (SharedChat, called by their fakes) ----------------------------

    def next_message_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def posted(self, sender: FakeBotAPI, message: JSON) -> None:
        author = self.member(sender)
        self._remember(message)
        with self._lock:
            self._last_bot = author.username
        for member in self.members():
            if member.fake is not sender:
                deliver = self.sees_bot(author, member, message)
                if deliver:
                    with self._lock:
                        self._deliveries.append((author.username, member.username, message))
                member.fake.receive(message, deliver=deliver)

    def deleted(self, sender: FakeBotAPI, message_id: int) -> None:
        with self._lock:
            self._history.pop(message_id, None)
        for member in self.members():
            if member.fake is not sender:
                member.fake.forget(self.chat_id, message_id)

    # -- the rules ------------------------------------------------------------------------

    def sees_person(self, member: Member, message: JSON) -> bool:
        if member.sees_everything or _replies_to(member, message):
            return True
        if f"@{member.username}" in (message.get("text") or "").lower():
            return True  # a mention, or /command@this_bot
        commands = _command_mentions(message)
        with self._lock:
            last = self._last_bot
        return "" in commands and last == member.username

    @staticmethod
    def sees_bot(author: Member, member: Member, message: JSON) -> bool:
        """Whether ``member`` receives a message that the bot ``author`` posted."""
        if not (author.fake.bot_to_bot or member.fake.bot_to_bot):
            return False
        if member.username in _command_mentions(message) or _replies_to(member, message):
            return True
        return member.fake.bot_to_bot and member.sees_everything

    # -- inspection -----------------------------------------------------------------------

    def members(self) -> list[Member]:
        with self._lock:
            return list(self._members.values())

    def delivered(self) -> list[tuple[str, str, JSON]]:
        """(author, receiver, message) for every bot message another bot received."""
        with self._lock:
            return copy.deepcopy(self._deliveries)

    def history(self) -> list[JSON]:
        """Every message still in the group, oldest first."""
        with self._lock:
            return [copy.deepcopy(self._history[key]) for key in sorted(self._history)]

    def _remember(self, message: JSON) -> None:
        with self._lock:
            self._history[int(message["message_id"])] = copy.deepcopy(message)

    def _replied(self, message_id: int) -> JSON:
        with self._lock:
            found = self._history.get(message_id)
        if found is None:
            raise LookupError(f"no message {message_id} in the group")
        flat = copy.deepcopy(found)
        flat.pop("reply_to_message", None)  # Telegram does not nest replies further
        return flat


def _command_mentions(message: JSON) -> set[str]:
    """The bots that the message's commands name (lower case); "" for a command naming none."""
    units = (message.get("text") or "").encode("utf-16-le")  # offsets count UTF-16 units
    named: set[str] = set()
    for entity in message.get("entities") or []:
        if entity.get("type") == "bot_command":
            start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
            command = units[start:end].decode("utf-16-le")
            named.add(command.partition("@")[2].lower())
    return named


def _replies_to(member: Member, message: JSON) -> bool:
    replied = message.get("reply_to_message") or {}
    return bool(replied.get("from", {}).get("id") == member.fake.bot_id)

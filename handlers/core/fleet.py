"""Several Stewards in one chat: who is meant, who else is here, and who has gone quiet.

Each server runs its own Steward with a short name. A command may name one of them
(``!vps restart nextcloud`` or ``!restart nextcloud @vps``); the others stay silent. What a
Steward knows of the others it learns from what they send (their messages carry their name,
version, heartbeat interval and open alerts): there is no registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from handlers.core.messages import ChatRef
from values import value

# A name people type after ``!`` or ``@``: short, lower case, no spaces.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
FLEET_KEY = "org.steward.fleet"  # the key of the signature in a Matrix event's content
# A signature as a line of text, where a message carries nothing but text (Telegram's
# heartbeats). Strict: it is read from other bots' messages.
_LINE = re.compile(
    r"💓 Steward (?P<name>[a-z0-9][a-z0-9_-]{0,31}) (?P<version>[!-~]{1,40})"
    r" · heartbeat every (?P<beat>[1-9][0-9]{0,4}) s · open alerts: (?P<alerts>[0-9]{1,4})"
)


@value
class Signature:
    """What a Steward says about itself in everything it sends."""

    name: str
    version: str
    heartbeat_seconds: int
    open_alerts: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "heartbeat": self.heartbeat_seconds,
            "alerts": self.open_alerts,
        }

    def as_line(self) -> str:
        """The signature as plain text (no markup to escape: ``from_line`` reads it back)."""
        version = "".join(c for c in self.version if "!" <= c <= "~")[:40] or "unknown"
        return (
            f"💓 Steward {self.name} {version} · heartbeat every {self.heartbeat_seconds} s"
            f" · open alerts: {self.open_alerts}"
        )

    @classmethod
    def from_line(cls, text: str) -> Signature | None:
        """None for anything but a whole line written by ``as_line``."""
        found = _LINE.fullmatch(text.strip())
        if found is None:
            return None
        data = {
            **found.groupdict(),
            "heartbeat": int(found["beat"]),
            "alerts": int(found["alerts"]),
        }
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: object) -> Signature | None:
        """None for anything that is not a well-formed signature: it comes from the chat."""
        if not isinstance(data, dict):
            return None
        name, version = data.get("name"), data.get("version")
        beat, alerts = data.get("heartbeat"), data.get("alerts", 0)
        if not (isinstance(name, str) and NAME.fullmatch(name) and isinstance(version, str)):
            return None
        if not (isinstance(beat, int) and 0 < beat <= 86400 and isinstance(alerts, int)):
            return None
        return cls(name, version[:40], beat, max(0, alerts))


@value
class Peer:
    """Another Steward, as last heard in one chat."""

    signature: Signature
    chat: ChatRef
    sender: str  # its account: a Matrix id or a Telegram bot username
    last_seen: datetime

    @property
    def name(self) -> str:
        return self.signature.name

    def overdue(self, now: datetime) -> bool:
        """Silent for longer than the heartbeat interval it announced."""
        return now - self.last_seen > timedelta(seconds=self.signature.heartbeat_seconds)


@dataclass
class Fleet:
    """This Steward's name and what it has seen of the others, per chat, in memory: a restart
    forgets them, and they are learnt again from their next heartbeat."""

    me: Signature
    peers: dict[tuple[ChatRef, str], Peer] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.me.name

    def saw(self, chat: ChatRef, sender: str, signature: Signature, when: datetime) -> bool:
        """Record a sign of life; True when this Steward is new in this chat."""
        if signature.name == self.name:
            return False  # a namesake (or ourselves through another account): never a peer
        key = (chat, signature.name)
        new = key not in self.peers
        self.peers[key] = Peer(signature, chat, sender, when)
        return new

    def heard(self, chat: ChatRef, sender: str, when: datetime) -> Peer | None:
        """Any message from a known Steward's account is a sign of life; its signature stays
        as last announced. None when that account is no Steward seen in this chat."""
        for key, peer in self.peers.items():
            if peer.chat == chat and peer.sender == sender:
                if when > peer.last_seen:
                    self.peers[key] = replace(peer, last_seen=when)
                return self.peers[key]
        return None

    def left(self, chat: ChatRef, sender: str) -> None:
        for key, peer in list(self.peers.items()):
            if peer.chat == chat and peer.sender == sender:
                del self.peers[key]

    def in_chat(self, chat: ChatRef) -> list[Peer]:
        return sorted((p for p in self.peers.values() if p.chat == chat), key=lambda p: p.name)

    def before_me(self, chat: ChatRef, now: datetime) -> list[Peer]:
        """The live Stewards here whose answers come before ours in name order."""
        return [p for p in self.in_chat(chat) if p.name < self.name and not p.overdue(now)]

    def latest(self, name: str) -> Peer | None:
        """The freshest sign of life of ``name``, in any chat."""
        seen = [p for p in self.peers.values() if p.name == name]
        return max(seen, key=lambda p: p.last_seen) if seen else None

    def with_alerts(self, count: int) -> None:
        self.me = replace(self.me, open_alerts=count)


def addressee(
    name: str, args: tuple[str, ...], is_command: Callable[[str], bool]
) -> tuple[str | None, str, tuple[str, ...]]:
    """Which Steward a command line names, and the command without that name.

    ``restart nextcloud @vps`` and ``vps restart nextcloud`` both name ``vps``; a Matrix id
    (``@alice:example.org``) is an argument, never an address. None when no Steward is named."""
    if args and args[-1].startswith("@") and ":" not in args[-1]:
        target = args[-1][1:].lower()
        if NAME.fullmatch(target):
            return target, name, args[:-1]
    if not is_command(name) and NAME.fullmatch(name) and args and is_command(args[0].lower()):
        return name, args[0].lower(), args[1:]
    return None, name, args


def table_line(signature: Signature, last_seen: str, overdue: bool) -> str:
    alerts = f"{signature.open_alerts} open alerts" if signature.open_alerts else "no alerts"
    mark = "⏰ overdue" if overdue else "✅"
    return f"{mark} <b>{signature.name}</b> {signature.version}, {last_seen}, {alerts}"


def names(peers: Iterable[Peer]) -> list[str]:
    return [p.name for p in peers]

"""`steward run` on Matrix, against the real Synapse the suite starts, as in production.

``MatrixBots`` starts bot processes with a clean environment (Matrix only, demo server) and
checks at the end that each stopped cleanly and never printed its password or token.
``Person`` is a real matrix-nio client for the people in a test: it creates rooms, sends
commands and reactions, and reads the room as a client would show it (edits applied,
redacted reactions gone).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, RoomSendResponse, SyncResponse

from tests.e2e.harness import START_TIMEOUT, BotProcess, BotRunner
from tests.support.synapse import RegisteredUser, Synapse

JSON = dict[str, Any]
T = TypeVar("T")


@dataclass
class Message:
    """A bot message as a client shows it: the newest edit of its content."""

    event_id: str
    sender: str
    msgtype: str
    body: str
    html: str
    reply_to: str | None
    mentions: tuple[str, ...]
    edits: list[int] = field(default_factory=list)  # server timestamps of the edits
    sent_at: int = 0


class Person:
    """One person with their own device. ``sync`` reads new events into ``timeline``."""

    def __init__(self, synapse: Synapse, user: RegisteredUser, store: Path | None = None) -> None:
        self.user = user
        config = AsyncClientConfig(encryption_enabled=store is not None, store_sync_tokens=False)
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            synapse.url, user.user_id, device_id=user.device_id,
            store_path=str(store or ""), config=config,
        )  # fmt: skip
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.timeline: dict[str, list[JSON]] = {}
        self.invites: set[str] = set()
        self._token: str | None = None

    @property
    def user_id(self) -> str:
        return self.user.user_id

    async def close(self) -> None:
        await self.client.close()

    async def sync(self, timeout_ms: int = 500) -> None:
        response = await self.client.sync(timeout=timeout_ms, since=self._token)
        assert isinstance(response, SyncResponse), response
        self._token = response.next_batch
        for room_id in response.rooms.invite:
            self.invites.add(room_id)
        for room_id, info in response.rooms.join.items():
            self.timeline.setdefault(room_id, []).extend(
                event.source for event in info.timeline.events
            )
        if self.client.olm is not None:
            if self.client.should_upload_keys:
                await self.client.keys_upload()
            if self.client.should_query_keys:
                await self.client.keys_query()

    async def wait(self, what: Callable[[], T], within: float = 20.0, label: str = "") -> T:
        """Sync until ``what()`` is truthy; returns its value."""
        deadline = time.monotonic() + within
        while True:
            value = what()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {label or what}")
            await self.sync()

    async def create_room(
        self, *invite: str, encrypted: bool = False, speakers_only: bool = False
    ) -> str:
        """``speakers_only``: only the creator may send messages (and reactions)."""
        initial = []
        if encrypted:
            initial.append({
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            })  # fmt: skip
        # Since room version 12 the creator outranks every power level and is not listed.
        levels = {"events_default": 50} if speakers_only else None
        response = await self.client.room_create(
            invite=list(invite), initial_state=initial, power_level_override=levels
        )
        assert isinstance(response, RoomCreateResponse), response
        return str(response.room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        assert not hasattr(response, "status_code"), response

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        assert hasattr(response, "room_id"), response

    async def leave(self, room_id: str) -> None:
        await self.client.room_leave(room_id)

    async def say(self, room_id: str, text: str, msgtype: str = "m.text") -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": msgtype, "body": text})

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.send(room_id, "m.reaction", {"m.relates_to": relates})

    async def send(self, room_id: str, event_type: str, content: JSON) -> str:
        response = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    # -- reading the room as a client shows it --------------------------------------------

    def members_joined(self, room_id: str) -> set[str]:
        members: dict[str, str] = {}
        for event in self.timeline.get(room_id, []):
            if event.get("type") == "m.room.member":
                members[event["state_key"]] = event["content"].get("membership", "")
        return {user for user, membership in members.items() if membership == "join"}

    def messages(self, room_id: str, sender: str) -> list[Message]:
        found: dict[str, Message] = {}
        for event in self.timeline.get(room_id, []):
            if event.get("type") != "m.room.message" or event.get("sender") != sender:
                continue
            content = event.get("content", {})
            relates = content.get("m.relates_to", {})
            if relates.get("rel_type") == "m.replace":
                original = found.get(relates.get("event_id", ""))
                if original is not None:
                    new = content.get("m.new_content", {})
                    original.body = new.get("body", "")
                    original.html = new.get("formatted_body", "")
                    original.msgtype = new.get("msgtype", "")
                    original.edits.append(int(event["origin_server_ts"]))
                continue
            found[event["event_id"]] = Message(
                event["event_id"],
                sender,
                content.get("msgtype", ""),
                content.get("body", ""),
                content.get("formatted_body", ""),
                relates.get("m.in_reply_to", {}).get("event_id"),
                tuple(content.get("m.mentions", {}).get("user_ids", ())),
                sent_at=int(event["origin_server_ts"]),
            )
        return list(found.values())

    def find(
        self, room_id: str, sender: str, contains: str = "", event_id: str | None = None
    ) -> list[Message]:
        """Messages of ``sender`` whose current body contains ``contains``."""
        return [
            m
            for m in self.messages(room_id, sender)
            if contains in m.body and event_id in (None, m.event_id)
        ]

    def reply_to(self, room_id: str, sender: str, event_id: str) -> list[Message]:
        return [m for m in self.messages(room_id, sender) if m.reply_to == event_id]

    def reactions(self, room_id: str, event_id: str) -> set[tuple[str, str]]:
        """(sender, key) of the reactions on an event that were not redacted."""
        events = self.timeline.get(room_id, [])
        redacted = {e.get("redacts") or e.get("content", {}).get("redacts") for e in events
                    if e.get("type") == "m.room.redaction"}  # fmt: skip
        return {
            (e["sender"], e["content"]["m.relates_to"]["key"])
            for e in events
            if e.get("type") == "m.reaction"
            and e["event_id"] not in redacted
            and e.get("content", {}).get("m.relates_to", {}).get("event_id") == event_id
        }


class MatrixBots(BotRunner):
    """Bots on Matrix, on the suite's Synapse, as one bot account."""

    def __init__(self, synapse: Synapse, bot: RegisteredUser, root: Path, **settings: str) -> None:
        super().__init__(root)
        self.synapse = synapse
        self.bot = bot
        self.settings = settings

    def secrets(self) -> dict[str, str]:
        found = {"password": self.bot.password}
        token = self.session().get("access_token")
        if token:
            found["access token"] = token
        return found

    def env(self, **settings: str) -> dict[str, str]:
        env = {
            **self.base_env(),
            "STEWARD_MATRIX_HOMESERVER": self.synapse.url,
            "STEWARD_MATRIX_USER": self.bot.user_id,
            "STEWARD_MATRIX_PASSWORD": self.bot.password,
            "STEWARD_LOG_LEVEL": "DEBUG",
        }
        settings = {**self.settings, **settings}
        env.update({f"STEWARD_{name.upper()}": value for name, value in settings.items()})
        return env

    def start(self, *, ready: bool = True, **settings: str) -> BotProcess:
        """Start `steward run`; with ``ready``, wait until it has stored a new sync token."""
        before = self.next_batch()
        process = self.launch(self.env(**settings))
        deadline = time.monotonic() + START_TIMEOUT
        while ready:
            if process.popen.poll() is not None:
                raise AssertionError(
                    f"steward exited with {process.popen.returncode}; stderr:\n{process.stderr}"
                )
            token = self.next_batch()
            if token is not None and token != before:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"steward did not sync; stderr:\n{process.stderr}")
            time.sleep(0.05)
        return process

    def kv(self, key: str) -> str | None:
        """A value the bot keeps; None also before the bot made its database."""
        if not self.db_path.exists():
            return None  # and do not create it: sqlite3.connect would
        try:
            rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        except sqlite3.OperationalError:
            return None
        return str(rows[0][0]) if rows else None

    def next_batch(self) -> str | None:
        return self.kv("matrix:next_batch")

    def session(self) -> dict[str, str]:
        raw = self.kv("matrix:session")
        return dict(json.loads(raw)) if raw else {}

    def session_device(self) -> str:
        return self.session()["device_id"]


async def settle(seconds: float) -> None:
    """Give the bot (another process) time to do something it must not do."""
    await asyncio.sleep(seconds)

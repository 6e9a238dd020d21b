"""The Matrix transport on matrix-nio, driven by hand inside Steward's event loop.

One task syncs. Each sync's events are claimed by event id in the database before anything
acts on them, so neither a restart nor a re-delivered sync runs a command twice; the sync
token is stored after the batch, so a restart resumes where the last one ended. The first
sync of a bot that has never synced is only the starting point: nothing in it is executed.

Commands take ``!`` or ``/``. Confirmations are reactions on the prompt (✅/❌) or
``!confirm CODE`` / ``!cancel CODE``; the engine decides who may, as on every transport.
The bot joins a room only when an admin invited it, and leaves once no admin is in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinedMembersResponse,
    LoginResponse,
    MegolmEvent,
    ReactionEvent,
    RoomMemberEvent,
    RoomMessageText,
    SyncResponse,
    WhoamiResponse,
)

from bot import logs
from bot.config import ConfigError
from bot.transports.lanes import ChatLanes
from bot.transports.matrix_devices import DeviceWatch
from bot.transports.matrix_fleet import MatrixFleet, beat_forever, say_hello, say_hello_back
from bot.transports.matrix_login import MatrixLogin
from bot.transports.matrix_outbox import KEYS, TRANSPORT, MatrixOutbox, describe
from bot.transports.matrix_state import MatrixState, Session
from handlers.core.engine import Engine
from handlers.core.messages import Actor, ChatRef, Command, Press, Reply, esc
from handlers.core.records import AuditEvent
from handlers.core.spec import Role, split_command_line

log = logging.getLogger(__name__)
DEVICE_NAME = "Steward"
TIDY_EVERY = 6 * 3600.0
# Only what the bot acts on; presence and other accounts' data would only cost bandwidth.
SYNC_FILTER = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {"limit": 50},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
}
_REPLY_FALLBACK = re.compile(r"\A(?:>[^\n]*\n)+\n", re.MULTILINE)


class MatrixTransport:
    def __init__(
        self,
        engine: Engine,
        login: MatrixLogin,
        state: MatrixState,
        *,
        poll_timeout_ms: int = 30_000,
        max_retry_wait: float = 5.0,
        watch: str | None = None,
    ) -> None:
        if login.e2ee and login.store_dir is None:
            raise ValueError("end-to-end encryption needs a store folder")
        config = AsyncClientConfig(
            # nio retries dropped connections and 429 itself, forever, reusing the transaction
            # id; the cap keeps the bot close behind a homeserver that comes back.
            max_timeout_retry_wait_time=max_retry_wait,
            encryption_enabled=login.e2ee,
            store_sync_tokens=False,  # the token lives in our database, e2ee or not
        )
        store = str(login.store_dir) if login.store_dir else ""
        if login.store_dir is not None and login.e2ee:
            login.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.client = AsyncClient(login.homeserver, login.user, store_path=store, config=config)
        self.engine = engine
        self.login = login
        self.state = state
        admins = [user for user, role in engine.access.members(TRANSPORT) if role is Role.ADMIN]
        self.admins = frozenset(admins)
        fleet = engine.deps.fleet
        self.fleet = MatrixFleet(engine, fleet, watch) if fleet is not None else None
        signature = self.fleet.signature if self.fleet is not None else None
        self.outbox = MatrixOutbox(self.client, state, admins, signature)
        self._poll_timeout_ms = poll_timeout_ms
        self._lanes = ChatLanes()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._warned_encrypted: set[str] = set()
        self.devices = DeviceWatch(self.client, state.kv, admins, self._new_device)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._log_in()
        self._sync_task = asyncio.create_task(self._sync_forever(), name="matrix-sync")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    async def _log_in(self) -> None:
        login, client = self.login, self.client
        if login.access_token is not None:
            client.access_token = login.access_token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise ConfigError(
                    f"STEWARD_MATRIX_ACCESS_TOKEN: the homeserver refused it ({describe(who)})"
                )
            client.restore_login(who.user_id, who.device_id or "", login.access_token)
            return
        saved = await self.state.session()
        if (
            saved is not None
            and saved.homeserver == login.homeserver
            and (login.user in (saved.user_id, _localpart(saved.user_id)))
        ):
            logs.hide(saved.access_token)
            client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            who = await client.whoami()
            if isinstance(who, WhoamiResponse):
                log.info("Matrix: resumed the session of %s", saved.device_id)
                return
            log.info("Matrix: the saved session ended (%s); logging in again", describe(who))
            client.access_token = ""
            client.device_id = saved.device_id  # keep the same device, and its keys
        if login.password is None:
            raise ConfigError("STEWARD_MATRIX_PASSWORD: needed, or STEWARD_MATRIX_ACCESS_TOKEN")
        response = await client.login(login.password, device_name=DEVICE_NAME)
        if not isinstance(response, LoginResponse):
            raise ConfigError(f"STEWARD_MATRIX_PASSWORD: the login failed ({describe(response)})")
        logs.hide(response.access_token)
        await self.state.save_session(
            Session(login.homeserver, response.user_id, response.device_id, response.access_token)
        )
        log.info("Matrix: logged in as %s, device %s", response.user_id, response.device_id)

    # -- sync -----------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        token = await self.state.next_batch()
        first, delay = True, 1.0
        tidy_at = time.monotonic()
        while True:
            try:
                token = await self._sync_once(token, first=first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the sync loop never dies
                log.warning("Matrix sync failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if first and self.fleet is not None:
                self._spawn(say_hello(self.fleet, self._admin_room_ids(), self.outbox.send_event))
                self._spawn(beat_forever(self.fleet, self.outbox.send_event))
            first, delay = False, 1.0
            if time.monotonic() >= tidy_at:
                tidy_at = time.monotonic() + TIDY_EVERY
                await self._tidy()

    async def _tidy(self) -> None:
        try:
            dropped = await self.state.tidy()
        except Exception:
            log.exception("Matrix: tidying the stored event ids failed")
        else:
            log.debug("Matrix: forgot %d old event ids and prompts", dropped)

    async def _sync_once(self, token: str | None, *, first: bool) -> str:
        response = await self.client.sync(
            timeout=0 if first else self._poll_timeout_ms,
            sync_filter=SYNC_FILTER,
            since=token,
            # The first sync after a start loads every room's state: members, and whether
            # it is encrypted.
            full_state=first or None,
        )
        if not isinstance(response, SyncResponse):
            raise _SyncFailedError(describe(response))
        # Only the very first sync of a bot that never synced is history, not for us.
        await self._handle(response, replay=token is not None)
        await self.state.save_next_batch(response.next_batch)
        await self.devices.after_sync(response)
        if self.login.e2ee:
            await self._keep_keys()
        return str(response.next_batch)

    async def _keep_keys(self) -> None:
        client = self.client
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    async def _handle(self, response: SyncResponse, *, replay: bool) -> None:
        for room_id, invite in response.rooms.invite.items():
            await self._on_invite(room_id, invite.invite_state)
        for room_id, info in response.rooms.join.items():
            events = info.timeline.events
            # A room the bot has just joined shows some history first: never act on it.
            joined = [i for i, event in enumerate(events) if self._is_own_join(event)]
            if joined and self.fleet is not None:  # the Stewards already here learn of us
                self._spawn(say_hello(self.fleet, [room_id], self.outbox.send_event))
            for event in events[joined[-1] + 1 :] if joined else events:
                if getattr(event, "sender", None) == self.client.user_id:
                    continue
                if self.fleet is not None and self._from_steward(room_id, event):
                    continue  # never a command: Stewards do not command each other
                if isinstance(event, RoomMemberEvent):
                    await self._on_member(room_id, event)
                elif replay:
                    self._dispatch(room_id, event)

    def _is_own_join(self, event: Any) -> bool:
        return (
            isinstance(event, RoomMemberEvent)
            and event.state_key == self.client.user_id
            and event.membership == "join"
            and event.prev_membership != "join"  # not a change of display name
        )

    def _dispatch(self, room_id: str, event: Any) -> None:
        handler: Callable[[str, Any], Awaitable[None]]
        if isinstance(event, RoomMessageText):
            handler = self._on_text
        elif isinstance(event, ReactionEvent):
            handler = self._on_reaction
        elif isinstance(event, MegolmEvent):
            handler = self._on_undecryptable
        else:
            return
        # Tasks start in creation order, so each room's lane is entered in event order.
        self._spawn(self._lanes.run(room_id, self._guarded(room_id, handler, event)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _from_steward(self, room_id: str, event: Any) -> bool:
        """Learn from another Steward's event; answer its first hello here with a beat."""
        assert self.fleet is not None  # noqa: S101 - called only in a fleet
        if isinstance(event, RoomMemberEvent) and event.membership in ("leave", "ban"):
            self.fleet.left(room_id, event.state_key)
        if not hasattr(event, "source") or not hasattr(event, "server_timestamp"):
            return False
        steward, hello = self.fleet.observe(room_id, event)
        if hello:
            beat = self.fleet.heartbeat()
            self._spawn(say_hello_back(room_id, beat, self.outbox.send_event))
        return steward

    async def _guarded(
        self, room_id: str, handler: Callable[[str, Any], Awaitable[None]], event: Any
    ) -> None:
        try:
            await handler(room_id, event)
        except Exception as exc:
            incident = secrets.token_hex(4)
            log.exception("incident %s while handling a Matrix event", incident)
            text = f"Something went wrong (incident <code>{incident}</code>). It is logged."
            with contextlib.suppress(Exception):
                await self.outbox.send(ChatRef(TRANSPORT, room_id), Reply(text), event.event_id)
            summary = f"Matrix event failed: {esc(type(exc).__name__)}"
            await self.engine.report_incident(incident, summary)

    # -- events ---------------------------------------------------------------------------

    async def _on_text(self, room_id: str, event: RoomMessageText) -> None:
        relates = event.source.get("content", {}).get("m.relates_to", {})
        if relates.get("rel_type") == "m.replace":
            return  # an edit: commands are never re-run by editing them
        parsed = split_command_line(_REPLY_FALLBACK.sub("", event.body, count=1))
        if parsed is None or not await self._first_sight(event):
            return
        name, args = parsed
        sent = Command(
            name,
            args,
            self._actor(room_id, event.sender),
            ChatRef(TRANSPORT, room_id),
            _moment(event.server_timestamp),
            event.event_id,
        )
        command = self.engine.for_me(sent)
        if command is None:
            return  # it names another Steward
        if self.fleet is not None and command == sent:
            # Each Steward here answers: in name order, so the room reads as one table.
            await self.fleet.wait_turn(ChatRef(TRANSPORT, room_id), event.event_id)
        if command.name in ("confirm", "cancel"):
            await self._confirm_by_code(command)
        else:
            await self.engine.handle_command(command)

    async def _confirm_by_code(self, cmd: Command) -> None:
        assert cmd.message_id is not None  # noqa: S101 - every Matrix command has its event
        if self.engine.access.role_of(cmd.actor) is None:
            await self.engine.refuse_stranger(
                cmd.actor, cmd.chat, cmd.name, cmd.args, cmd.message_id
            )
            return
        # ``!confirm CODE 123456``: the prompt's code, then a one-time code when it asks for one.
        fits = len(cmd.args) == 1 or (len(cmd.args) == 2 and cmd.name == "confirm")
        found = await self.state.prompt_by_code(cmd.args[0]) if fits else None
        if found is None or found[1].room_id != cmd.chat.chat_id:
            if self._others_here(cmd.chat):
                return  # the prompt is another Steward's: it answers, not this one
            # Never the one-time code in the audit row: only what names the prompt.
            await self.engine.audit(AuditEvent.REFUSED, cmd.actor, cmd.chat, cmd.name,
                                    cmd.args[:1], result="unknown code")  # fmt: skip
            usage = f"<code>!{cmd.name} CODE</code>"
            reply = Reply(f"No confirmation waits for that code. Usage: {usage}")
            await self.outbox.send(cmd.chat, reply, cmd.message_id)
            return
        prompt_id, prompt = found
        action = prompt.confirm if cmd.name == "confirm" else prompt.cancel
        code = cmd.args[1] if len(cmd.args) == 2 else None
        press = Press(action, cmd.actor, cmd.chat, cmd.received_at, prompt_id, code=code)
        await self._press(press, cmd.message_id)

    async def _on_reaction(self, room_id: str, event: ReactionEvent) -> None:
        meaning = KEYS.get(event.key)
        prompt = await self.state.prompt(event.reacts_to) if meaning else None
        if prompt is None or not await self._first_sight(event):
            return  # a reaction to anything else is just a reaction
        action = prompt.confirm if meaning == "confirm" else prompt.cancel
        actor = self._actor(room_id, event.sender)
        chat = ChatRef(TRANSPORT, room_id)
        press = Press(action, actor, chat, _moment(event.server_timestamp), event.reacts_to)
        await self._press(press, event.reacts_to)

    async def _press(self, press: Press, answer_to: str) -> None:
        """There are no toasts on Matrix: a refusal is answered in the room, to members only;
        the outcome itself shows in the edited prompt."""
        member = self.engine.access.role_of(press.actor) is not None

        async def answer(toast: str) -> None:
            if member and toast not in ("Confirmed.", "Cancelled."):
                await self.outbox.send(press.chat, Reply(esc(toast)), answer_to)

        await self.engine.handle_press(press, answer)

    async def _on_undecryptable(self, room_id: str, event: MegolmEvent) -> None:
        actor = self._actor(room_id, event.sender)
        if self.engine.access.role_of(actor) is None or room_id in self._warned_encrypted:
            return
        if not await self._first_sight(event):
            return
        self._warned_encrypted.add(room_id)
        if self.login.e2ee:
            log.warning("Matrix: could not decrypt %s in %s", event.event_id, room_id)
            text = "I could not decrypt that message. Send it again in a moment."
        else:
            text = (
                "This room is end-to-end encrypted and I run without encryption "
                "(STEWARD_MATRIX_E2EE). Talk to me in an unencrypted admin room."
            )
        await self.outbox.send(ChatRef(TRANSPORT, room_id), Reply(text), event.event_id)

    async def _on_invite(self, room_id: str, events: list[Any]) -> None:
        inviter = next(
            (
                event.sender
                for event in events
                if isinstance(event, InviteMemberEvent)
                and event.membership == "invite"
                and event.state_key == self.client.user_id
            ),
            None,
        )
        actor = Actor(TRANSPORT, inviter or "unknown")
        chat = ChatRef(TRANSPORT, room_id)
        if inviter in self.admins:
            response = await self.client.join(room_id)
            ok = hasattr(response, "room_id")
            result = "joined" if ok else f"join failed: {describe(response)}"
            await self.engine.audit(AuditEvent.OUTCOME, actor, chat, "invite", result=result)
            return
        await self.client.room_leave(room_id)  # declines the invitation
        await self.engine.audit(AuditEvent.REFUSED, actor, chat, "invite", result="not an admin")

    async def _on_member(self, room_id: str, event: RoomMemberEvent) -> None:
        if event.membership not in ("leave", "ban") or event.state_key not in self.admins:
            return
        response = await self.client.joined_members(room_id)
        if not isinstance(response, JoinedMembersResponse):
            log.warning("Matrix: cannot list the members of %s: %s", room_id, describe(response))
            return
        if any(member.user_id in self.admins for member in response.members):
            return
        await self.client.room_leave(room_id)
        await self.client.room_forget(room_id)
        actor = Actor(TRANSPORT, event.state_key)
        await self.engine.audit(AuditEvent.OUTCOME, actor, ChatRef(TRANSPORT, room_id),
                                "leave", result="no admin left in the room")  # fmt: skip

    async def _new_device(self, user: str, device: str, text: str) -> None:
        await self.engine.audit(AuditEvent.SECURITY, Actor(TRANSPORT, user), None, "new device",
                                (device,), result="admins warned")  # fmt: skip
        await self.engine.alert(text)

    # -- helpers --------------------------------------------------------------------------

    async def _first_sight(self, event: Any) -> bool:
        """Claim an event the bot is about to act on (not every chat line: that would be a
        database write per message). False when a run before this one claimed it."""
        return await self.state.first_sight(event.event_id)

    def _others_here(self, chat: ChatRef) -> bool:
        fleet = self.engine.deps.fleet
        return fleet is not None and bool(fleet.in_chat(chat))

    def _admin_room_ids(self) -> list[str]:
        return [chat.chat_id for chat in self.admin_rooms()]

    def _actor(self, room_id: str, user_id: str) -> Actor:
        room = self.client.rooms.get(room_id)
        name = room.user_name(user_id) if room is not None else None
        return Actor(TRANSPORT, user_id, name or user_id)

    def admin_rooms(self) -> list[ChatRef]:
        """Rooms an admin is in: where alerts go."""
        return [
            ChatRef(TRANSPORT, room_id)
            for room_id, room in self.client.rooms.items()
            if any(user in self.admins and user not in room.invited_users for user in room.users)
        ]


class _SyncFailedError(Exception):
    pass


def _moment(server_timestamp: int) -> datetime:
    return datetime.fromtimestamp(server_timestamp / 1000, UTC)


def _localpart(user_id: str) -> str:
    return user_id.removeprefix("@").split(":", 1)[0]

"""Sending and editing Matrix messages.

- Replies are ``m.notice`` (clients do not notify for them), in reply to the command. Alerts,
  sent on their own and not silent, are ``m.text`` that mention the admins, so that they ping.
- Edits are ``m.replace`` events. Progress edits one message.
- Buttons become reactions: the bot reacts ✅ and ❌ to its prompt, and the prompt names a
  short code for ``!confirm CODE`` and ``!cancel CODE``. Closing the prompt redacts the bot's
  reactions, as Telegram removes the keyboard.
- Long output and attachments are uploaded as ``m.file``; images (the weekly chart) as
  ``m.image``, shown inline.
- Buttons that run a command (an alert's Snooze) become the commands to send, in the text.

matrix-nio returns errors as values; every response is checked here, and an error becomes a
``MatrixSendError``. Network errors and 429 are retried inside nio (its config is set in
``matrix.py``), reusing the transaction id, so a retried send is never posted twice.
"""

from __future__ import annotations

import io
import logging
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from nio import AsyncClient, RoomSendResponse, UploadResponse

from bot.transports.matrix_state import MatrixState, Prompt
from bot.transports.render import to_matrix_html, to_plain
from handlers.core.fleet import FLEET_KEY
from handlers.core.messages import Attachment, Button, ChatRef, MessageRef, Reply, esc

log = logging.getLogger(__name__)
TRANSPORT = "matrix"
HTML = "org.matrix.custom.html"
CONFIRM_KEY, CANCEL_KEY = "✅", "❌"
# Keys people send for the same meaning (Element's picker adds a variation selector).
KEYS = {"✅": "confirm", "✅\ufe0f": "confirm", "✔️": "confirm", "❌": "cancel", "✖️": "cancel"}
# An event may be 64 KiB in all; text beyond this goes as a file.
MAX_TEXT = 24_000
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, no 1/I


class MatrixSendError(Exception):
    pass


class MatrixOutbox:
    def __init__(
        self,
        client: AsyncClient,
        state: MatrixState,
        admins: Sequence[str] = (),
        signature: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self.client = client
        self.state = state
        self.admins = tuple(admins)
        # Other Stewards in the room know this one by it (several servers in one room).
        self.signature = signature

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        room = chat.chat_id
        text = reply.text
        if len(text) > MAX_TEXT:
            name = "output.txt"
            attachment = Attachment(name, to_plain(text).encode())
            text = f"The answer is long; it is in <code>{name}</code>."
            reply = replace(reply, text=text, attachments=(attachment, *reply.attachments))
        prompt: Prompt | None = None
        decides = [b for b in reply.buttons if b.command_line is None]
        if decides:
            prompt = await self._new_prompt(room, decides)
            text = f"{text}\n\n{_hint(prompt, code=reply.code_prompt)}"
        text += _commands_line(reply.buttons)
        content = self._content(text, alert=reply_to is None and not reply.silent)
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        event_id = await self._send(room, "m.room.message", content)
        for attachment in reply.attachments:
            await self._send_file(room, attachment)
        if prompt is not None:
            await self._react(room, event_id, prompt)
        return MessageRef(chat, event_id)

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        room, event_id = ref.chat.chat_id, ref.message_id
        new = self._content(reply.text[:MAX_TEXT] + _commands_line(reply.buttons), alert=False)
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {new['body']}",
            "format": HTML,
            "formatted_body": f"* {new['formatted_body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        await self._send(room, "m.room.message", content)
        if not any(b.command_line is None for b in reply.buttons):
            await self._close_prompt(room, event_id)

    # -- content ------------------------------------------------------------------------------

    def _content(self, text: str, *, alert: bool) -> dict[str, Any]:
        body, html = to_plain(text), to_matrix_html(text)
        if not alert or not self.admins:
            return {"msgtype": "m.notice", "body": body, "format": HTML, "formatted_body": html}
        pills = " ".join(
            f'<a href="https://matrix.to/#/{esc(user)}">{esc(user)}</a>' for user in self.admins
        )
        return {
            "msgtype": "m.text",
            "body": f"{' '.join(self.admins)}: {body}",
            "format": HTML,
            "formatted_body": f"{pills}: {html}",
            "m.mentions": {"user_ids": list(self.admins)},
        }

    # -- buttons as reactions -------------------------------------------------------------------

    async def _new_prompt(self, room: str, buttons: Sequence[Button]) -> Prompt:
        actions = {button.action.partition(":")[0]: button.action for button in buttons}
        while True:
            code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))
            if await self.state.reserve_code(code):
                return Prompt(room, code, actions.get("cf", ""), actions.get("cx", ""))

    async def _react(self, room: str, event_id: str, prompt: Prompt) -> None:
        # Saved before reacting: a quick press must find the prompt.
        await self.state.save_prompt(event_id, prompt)
        reactions = []
        for key in (CONFIRM_KEY, CANCEL_KEY):
            relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
            reactions.append(await self._send(room, "m.reaction", {"m.relates_to": relates}))
        await self.state.save_prompt(
            event_id,
            Prompt(prompt.room_id, prompt.code, prompt.confirm, prompt.cancel, tuple(reactions)),
        )

    async def _close_prompt(self, room: str, event_id: str) -> None:
        prompt = await self.state.prompt(event_id)
        if prompt is None:
            return
        await self.state.forget_prompt(event_id, prompt)
        for reaction in prompt.reactions:
            response = await self.client.room_redact(room, reaction, reason="decided")
            if not hasattr(response, "event_id"):
                log.warning("could not remove a reaction in %s: %s", room, describe(response))

    # -- sending ------------------------------------------------------------------------------

    async def _send(self, room: str, event_type: str, content: dict[str, Any]) -> str:
        if self.signature is not None and event_type == "m.room.message":
            content = {**content, FLEET_KEY: self.signature()}
        return await self.send_event(room, event_type, content)

    async def send_event(self, room: str, event_type: str, content: dict[str, Any]) -> str:
        response = await self.client.room_send(
            room, event_type, content, ignore_unverified_devices=True
        )
        if not isinstance(response, RoomSendResponse):
            raise MatrixSendError(f"{event_type} to {room}: {describe(response)}")
        return str(response.event_id)

    async def _send_file(self, room: str, attachment: Attachment) -> None:
        encrypted = bool(getattr(self.client.rooms.get(room), "encrypted", False))
        uploaded, keys = await self.client.upload(
            io.BytesIO(attachment.data),
            content_type=attachment.mime,
            filename=attachment.name,
            encrypt=encrypted,
            filesize=len(attachment.data),
        )
        if not isinstance(uploaded, UploadResponse):
            raise MatrixSendError(f"upload of {attachment.name}: {describe(uploaded)}")
        info: dict[str, Any] = {"mimetype": attachment.mime, "size": len(attachment.data)}
        image = attachment.mime.startswith("image/")
        if attachment.mime == "image/png" and attachment.data[12:16] == b"IHDR":
            info["w"], info["h"] = struct.unpack(">II", attachment.data[16:24])
        content: dict[str, Any] = {
            "msgtype": "m.image" if image else "m.file",
            "body": attachment.name,
            "filename": attachment.name,
            "info": info,
        }
        if keys is not None:
            content["file"] = {**keys, "url": uploaded.content_uri}
        else:
            content["url"] = uploaded.content_uri
        await self._send(room, "m.room.message", content)


def _commands_line(buttons: Sequence[Button]) -> str:
    """No inline buttons on Matrix: the commands that run-buttons stand for, to send as text
    (``!snooze a3f09c · !mute a3f09c``); "" when there are none."""
    runs = [b.command_line for b in buttons if b.command_line is not None]
    return "\n" + " · ".join(f"<code>!{esc(line)}</code>" for line in runs) if runs else ""


def _hint(prompt: Prompt, *, code: bool = False) -> str:
    if code:
        return (
            f"Send <code>!confirm {prompt.code} 123456</code> with your current 6-digit code "
            f"to confirm, or react {CANCEL_KEY} or send <code>!cancel {prompt.code}</code> to "
            "cancel."
        )
    return (
        f"React {CONFIRM_KEY} to confirm or {CANCEL_KEY} to cancel, or send "
        f"<code>!confirm {prompt.code}</code> or <code>!cancel {prompt.code}</code>."
    )


def describe(response: object) -> str:
    status = getattr(response, "status_code", None)
    message = getattr(response, "message", None) or type(response).__name__
    return f"{status}: {message}" if status else str(message)

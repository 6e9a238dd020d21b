"""Sending and editing Telegram messages, through one seam with one retry policy.

Retry policy of ``TelegramOutbox.call``: up to 6 tries, only for transient failures.
- ``RetryAfter`` (429): wait exactly the ``retry_after`` Telegram asks for (the rate limiter
  may already have done so), then try again.
- ``NetworkError`` and ``TimedOut`` (a dropped connection, a 5xx answer): exponential backoff
  0.5, 1, 2, 4, 8 s, capped at 30 s.
- Everything else (``BadRequest``, ``Forbidden``, ``InvalidToken``) is final: retrying cannot
  help. "Message is not modified" is success.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import MessageLimit, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.transports.render import to_plain
from handlers.core.messages import Attachment, Button, ChatRef, MessageRef, Reply, esc

# PTB 22 warns on every read of RetryAfter.retry_after unless the timedelta form (its next
# major version's default) is chosen; ``_seconds`` reads both forms.
os.environ.setdefault("PTB_TIMEDELTA", "true")
log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSPORT = "telegram"
MAX_TRIES = 6
PHOTO_TYPES = frozenset({"image/png", "image/jpeg"})
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# How a code reaches the bot on Telegram: a reply to the prompt (TelegramTransport._code).
CODE_HINT = "\n<i>Reply to this message with the code to confirm.</i>"


class TelegramOutbox:
    def __init__(
        self,
        bot: Bot,
        *,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_in_flight: int = 4,
    ) -> None:
        self.bot = bot
        self._base_delay = base_delay
        self._max_delay = max_delay
        # At most as many requests as the connection pool has connections: the others wait
        # here, not in httpcore's pool, whose bookkeeping walks every waiting request on each
        # request and response. Measured in benchmarks/: 1,000 commands from 50 chats cost
        # 10-15 % less CPU per command. A retry waits outside.
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """The one place that talks to the Bot API; see the module docstring for the policy."""
        for attempt in range(1, MAX_TRIES + 1):
            try:
                async with self._in_flight:
                    return await fn()
            except RetryAfter as exc:
                if attempt == MAX_TRIES:
                    raise
                delay = _seconds(exc.retry_after)
                log.warning("%s: rate limited, retrying in %.1f s", what, delay)
            except BadRequest:
                raise  # a subclass of NetworkError in PTB, but final
            except (TimedOut, NetworkError) as exc:
                if attempt == MAX_TRIES:
                    raise
                delay = min(self._base_delay * 2 ** (attempt - 1), self._max_delay)
                log.warning("%s: %s, retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        chat_id = int(chat.chat_id)
        text = reply.text + (CODE_HINT if reply.code_prompt else "")
        if _too_long(text):
            return await self._send_long(chat, reply, reply_to)
        params = ReplyParameters(int(reply_to), allow_sending_without_reply=True) if (
            reply_to and reply_to.isdigit()
        ) else None  # fmt: skip
        message: Message = await self.call(
            "sendMessage",
            lambda: self.bot.send_message(
                chat_id,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(reply.buttons),
                disable_notification=_flag(reply.silent),
                protect_content=_flag(reply.sensitive),
                reply_parameters=params,
                link_preview_options=_NO_PREVIEW,
            ),
        )
        for attachment in reply.attachments:
            await self.send_document(chat, attachment, reply)
        return MessageRef(chat, str(message.message_id))

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        text = reply.text
        if _too_long(text):
            await self.send(ref.chat, reply, ref.message_id)
            text = "The full output was too long for one message; it is attached below."
        try:
            await self.call(
                "editMessageText",
                lambda: self.bot.edit_message_text(
                    text,
                    chat_id=int(ref.chat.chat_id),
                    message_id=int(ref.message_id),
                    parse_mode=ParseMode.HTML,
                    reply_markup=_keyboard(reply.buttons),
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except BadRequest as exc:
            if "message is not modified" not in exc.message.lower():
                raise

    async def send_document(self, chat: ChatRef, attachment: Attachment, reply: Reply) -> Message:
        # An image goes as a photo, shown inline (Telegram recompresses it): a chart needs no
        # tap to open. Anything else is a file.
        photo = attachment.mime in PHOTO_TYPES
        send = self.bot.send_photo if photo else self.bot.send_document
        return await self.call(
            "sendPhoto" if photo else "sendDocument",
            lambda: send(
                int(chat.chat_id),
                attachment.data,
                filename=attachment.name,
                disable_notification=_flag(reply.silent),
                protect_content=_flag(reply.sensitive),
            ),
        )

    async def _send_long(self, chat: ChatRef, reply: Reply, reply_to: str | None) -> MessageRef:
        """Too long for a message: the whole text goes as a file, with a short caption."""
        plain = to_plain(reply.text)
        first = plain.splitlines()[0][:200] if plain.strip() else "output"
        document = Attachment("output.txt", plain.encode(), "text/plain")
        summary = Reply(
            f"{esc(first)}\n<i>(full text attached: {len(plain)} characters)</i>",
            buttons=reply.buttons,
            silent=reply.silent,
            sensitive=reply.sensitive,
        )
        ref = await self.send(chat, summary, reply_to)
        await self.send_document(chat, document, reply)
        for attachment in reply.attachments:
            await self.send_document(chat, attachment, reply)
        return ref


def _keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    row = [InlineKeyboardButton(b.label, callback_data=b.action) for b in buttons]
    return InlineKeyboardMarkup([row])


def _flag(value: bool) -> bool | None:
    """True, or None: PTB leaves a None out of the request, and Telegram's default is false.
    Each parameter sent costs a little on both ends of every request (benchmarks/)."""
    return True if value else None


def _too_long(html_text: str) -> bool:
    # Telegram counts UTF-16 code units of the text after its entities are parsed. Parsing
    # only shortens the text, and a character is at most two units, so most replies need no
    # parsing at all.
    if 2 * len(html_text) <= MessageLimit.MAX_TEXT_LENGTH:
        return False
    plain = to_plain(html_text)
    return len(plain.encode("utf-16-le")) // 2 > MessageLimit.MAX_TEXT_LENGTH


def _seconds(value: object) -> float:
    total = getattr(value, "total_seconds", None)
    return float(total()) if callable(total) else float(value)  # type: ignore[arg-type]

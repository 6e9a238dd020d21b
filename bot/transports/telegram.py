"""The Telegram transport on python-telegram-bot, driven by hand inside Steward's event loop.

A gate in handler group -1 stops strangers before any other handler runs, and other bots'
messages, which are only observed (``TelegramFleet``). Updates from one chat are handled in
order; different chats are handled concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from telegram import BotCommand, BotCommandScopeChat, Message, Update, User
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationHandlerStop,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot import wire
from bot.config import ConfigError
from bot.transports.lanes import ChatLanes
from bot.transports.telegram_outbox import TRANSPORT, TelegramOutbox
from handlers.core.messages import CONFIRM, Actor, ChatRef, Command, Press, Reply, esc
from handlers.core.records import AuditEvent
from handlers.core.spec import CommandSpec, split_command_line

if TYPE_CHECKING:
    from bot.transports.telegram_fleet import TelegramFleet
    from handlers.core.engine import Engine

log = logging.getLogger(__name__)
POOL_SIZE = 4
POLL_INTERVAL = 0.0
# A one-time code as people type it, "123456" or "123 456"; any other reply is only chat.
_CODE = re.compile(r"^\s*(\d{3})\s?(\d{3})\s*$")


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, in order within a chat (see ``ChatLanes``). A bot's message
    skips the lane: it is only observed, and a command waiting for its turn in that chat may be
    waiting for exactly that message (another Steward's answer)."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._lanes = ChatLanes()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        user = update.effective_user if isinstance(update, Update) else None
        if user is not None and user.is_bot:
            await coroutine
            return
        await self._lanes.run(chat.id if chat is not None else None, coroutine)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def actor_of(user: User) -> Actor:
    return Actor(TRANSPORT, str(user.id), user.full_name)


class TelegramTransport:
    """``engine`` may come later (``attach``): Steward connects to Telegram while its database
    opens in a worker thread. Updates that arrive before then wait for it."""

    def __init__(
        self,
        engine: Engine | None,
        token: str,
        api_url: str,
        *,
        rate_limit: bool = True,
        poll_timeout: int = 10,
        watch: str | None = None,
        introduce: bool = False,
    ) -> None:
        tls = httpx.create_ssl_context()  # the CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR
        builder = (
            Application.builder()
            .token(token)
            .base_url(api_url)
            # Measured in benchmarks/: more open connections cost more CPU in httpcore's pool
            # bookkeeping than they save in waiting. Requests beyond the pool wait in the
            # outbox (max_in_flight), so many updates can be in progress cheaply: an update
            # holds its place until its audit row is committed, which may take 20 ms.
            .concurrent_updates(PerChatUpdateProcessor(64))
            # One TLS context for both of PTB's clients (commands, and getUpdates): each would
            # load the CA bundle on its own, 0.8 MB apiece. The same settings PTB gives them.
            .request(
                HTTPXRequest(
                    connection_pool_size=POOL_SIZE,
                    httpx_kwargs={"verify": tls, "event_hooks": {"request": [self._on_request]}},
                )
            )
            .get_updates_request(HTTPXRequest(connection_pool_size=1, httpx_kwargs={"verify": tls}))
            # Steward schedules with its own APScheduler (bot/scheduler.py): PTB's JobQueue
            # would be a second scheduler that nothing uses.
            .job_queue(None)
        )
        # The limiter keeps to Telegram's flood limits; a loopback test server has none. It
        # only paces: retrying a 429 is TelegramOutbox.call's job, so there is one policy.
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            builder.rate_limiter(AIORateLimiter(max_retries=0)).build()
            if rate_limit
            else builder.build()
        )
        self._engine: Engine | None = None
        self._attached = asyncio.Event()
        # Set as the first request to the Bot API leaves (getMe, or its retry while Telegram is
        # unreachable): the app's build waits for it (bot/cli.py).
        self.dialed = asyncio.Event()
        self._watch = watch
        self._introduce = introduce
        self.fleet: TelegramFleet | None = None
        self.outbox = TelegramOutbox(self.application.bot, max_in_flight=POOL_SIZE)
        if engine is not None:
            self.attach(engine)
        self._poll_timeout = poll_timeout
        self._background: set[asyncio.Task[None]] = set()
        app = self.application
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        app.add_handler(MessageHandler(filters.COMMAND & filters.UpdateType.MESSAGE, self._command))
        code_reply = filters.TEXT & filters.REPLY & ~filters.COMMAND & filters.UpdateType.MESSAGE
        app.add_handler(MessageHandler(code_reply, self._code))
        app.add_handler(CallbackQueryHandler(self._press))
        app.add_error_handler(self._error)

    def attach(self, engine: Engine) -> None:
        if engine.deps.fleet is not None:
            # Imported here: it brings the alert handlers and the providers' types, which the
            # connection to Telegram does not need and would otherwise wait for at start.
            from bot.transports.telegram_fleet import TelegramFleet  # noqa: PLC0415

            self.fleet = TelegramFleet(engine, engine.deps.fleet, self.outbox, self._watch,
                                       introduce=self._introduce)  # fmt: skip
        self._engine = engine
        self._attached.set()

    async def engine(self) -> Engine:
        """The engine, once attached. An update still waiting for it when Steward stops before
        it got one is dropped; that can happen only in the first moments of a start."""
        await self._attached.wait()
        if self._engine is None:
            raise ApplicationHandlerStop
        return self._engine

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._initialize()
        await self.application.start()
        assert self.application.updater is not None  # noqa: S101 - built with an updater
        await self.application.updater.start_polling(
            timeout=self._poll_timeout,
            # Re-poll at once. A pause here (3 ms until 2026-12-04) let replies leave before the
            # next poll on the single-threaded fake, but a command sent right after a reply
            # then waited out the pause: 1.3x a bare PTB bot back to back, in benchmarks/.
            poll_interval=POLL_INTERVAL,
            bootstrap_retries=-1,
            allowed_updates=["message", "callback_query"],
            error_callback=_polling_error,
        )
        self._spawn(self.publish_commands())
        self._spawn(self._start_fleet())

    async def _start_fleet(self) -> None:
        try:
            await self.engine()
        except ApplicationHandlerStop:
            return  # stopped before the engine came
        if self.fleet is not None:
            try:
                await self.fleet.start()
            except Exception:
                # Its record unread (the database is down): this run neither beats nor
                # deletes, so no beat is sent that a later run could not find.
                log.exception("Telegram: the fleet did not start; no heartbeats in this run")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_request(self, request: httpx.Request) -> None:
        self.dialed.set()
        work = wire.take()
        if work is not None:
            # httpcore reports each step of a request to a "trace" callback: the work runs
            # once the request's body has been written, while the answer is awaited.
            request.extensions["trace"] = _once_sent(work)

    async def _initialize(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.application.initialize()
            except InvalidToken:
                raise ConfigError("STEWARD_TELEGRAM_TOKEN: Telegram refused the token") from None
            except NetworkError as exc:
                log.warning("cannot reach the Bot API (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
            else:
                return

    async def stop(self) -> None:
        self._attached.set()  # wake updates still waiting for an engine: there will be none
        for task in list(self._background):
            task.cancel()
        if self.fleet is not None:
            await self.fleet.stop()
        updater = self.application.updater
        with contextlib.suppress(TelegramError, RuntimeError):
            if updater is not None and updater.running:
                await updater.stop()
            if self.application.running:
                await self.application.stop()
            await self.application.shutdown()

    async def publish_commands(self) -> None:
        """Each person's menu shows only what they may run; strangers see no menu at all.

        Runs in the background and keeps trying while the Bot API is unreachable."""
        delay = 5.0
        while True:
            try:
                await self._publish_menus()
            except BadRequest as exc:
                log.warning("Telegram refused the command menus: %s", exc)
                return
            except TelegramError as exc:
                log.warning("could not publish the command menus (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)
            else:
                return

    async def _publish_menus(self) -> None:
        bot = self.application.bot
        engine = await self.engine()
        registry = engine.deps.registry
        await self.outbox.call("deleteMyCommands", bot.delete_my_commands)
        fleet = engine.deps.fleet
        server = fleet.name if fleet is not None else ""
        for user_id, role in engine.access.members(TRANSPORT):
            menu = _menu(registry.visible_to(role), server)
            await self._set_menu(menu, BotCommandScopeChat(int(user_id)))

    async def _set_menu(self, menu: list[BotCommand], scope: BotCommandScopeChat) -> None:
        bot = self.application.bot
        await self.outbox.call("setMyCommands", lambda: bot.set_my_commands(menu, scope=scope))

    # -- handlers -------------------------------------------------------------------------

    async def _gate(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None:
            raise ApplicationHandlerStop
        engine = await self.engine()
        if self.fleet is not None and chat.type in (chat.GROUP, chat.SUPERGROUP):
            self.fleet.in_group(str(chat.id))
            if user.is_bot and update.message is not None:
                self.fleet.observe(update.message)
        if user.is_bot:
            raise ApplicationHandlerStop  # another bot is never obeyed, nor refused
        actor = actor_of(user)
        if engine.access.role_of(actor) is not None:
            return
        where = ChatRef(TRANSPORT, str(chat.id))
        query = update.callback_query
        if query is not None:
            await self.outbox.call("answerCallbackQuery", lambda: query.answer("Not allowed."))
            # The toast is the refusal: no message in the chat (often a group) as well.
            await engine.audit(AuditEvent.REFUSED, actor, where, "press", result="stranger")
        elif self._addressed_to_us(update.message, private=chat.type == chat.PRIVATE):
            message = update.message
            assert message is not None  # noqa: S101 - _addressed_to_us checked it
            parsed = split_command_line(message.text or "")
            name, args = parsed or ("", ())
            sent = Command(name, args, actor, where, _aware(message.date))
            if engine.for_me(sent) is not None:  # not when it names another Steward
                await engine.refuse_stranger(actor, where, name, args, str(message.message_id))
        raise ApplicationHandlerStop

    def _addressed_to_us(self, message: Message | None, *, private: bool) -> bool:
        """In a private chat everything is for us; in a group only commands naming no other
        bot are."""
        if message is None or message.text is None:
            return False
        if private:
            return True
        return _command_mention(message) is not None and not self._names_other_bot(message)

    def _names_other_bot(self, message: Message) -> bool:
        """``/cmd@otherbot``: a command in a group meant for another bot."""
        mention = (_command_mention(message) or "").lower()
        return mention not in {"", (self.application.bot.username or "").lower()}

    async def _command(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None or message.text is None:
            return
        if self._names_other_bot(message):
            return
        parsed = split_command_line(message.text)
        if parsed is None:
            return
        name, args = parsed
        engine = await self.engine()
        where = ChatRef(TRANSPORT, str(chat.id))
        sent = Command(name, args, actor_of(user), where, _aware(message.date),
                       str(message.message_id))  # fmt: skip
        command = engine.for_me(sent)
        if command is None:
            return  # it names another Steward
        if self.fleet is not None and command == sent and not _command_mention(message):
            # Each Steward here answers: in name order, so the group reads as one table.
            await self.fleet.wait_turn(where, str(message.message_id))
        await engine.handle_command(command)

    async def _code(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """A reply to a confirmation prompt with a one-time code: the prompt's Confirm, with
        the code. The nonce comes from the prompt's own keyboard, which Telegram sends along
        with the message replied to; the engine checks everything else."""
        message, user = update.message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        found = _CODE.match(message.text)
        prompt = message.reply_to_message
        bot_id = self.application.bot.id
        action = _confirm_action(prompt, bot_id) if prompt is not None else None
        if found is None or prompt is None or action is None:
            return
        chat = ChatRef(TRANSPORT, str(message.chat.id))
        press = Press(action, actor_of(user), chat, datetime.now(UTC), str(prompt.message_id),
                      code="".join(found.groups()))  # fmt: skip

        async def answer(toast: str) -> None:
            if toast != "Confirmed.":  # the edited prompt says so
                await self.outbox.send(chat, Reply(esc(toast)), str(message.message_id))

        await (await self.engine()).handle_press(press, answer)

    async def _press(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        message = query.message
        if message is None or not isinstance(query.data, str):
            await self.outbox.call("answerCallbackQuery", lambda: query.answer("Not valid."))
            return
        press = Press(
            query.data,
            actor_of(user),
            ChatRef(TRANSPORT, str(message.chat.id)),
            datetime.now(UTC),
            str(message.message_id),
        )

        async def answer(toast: str) -> None:
            # Best effort: the press is decided already (the prompt says so), and a query that
            # Telegram no longer takes (too old after a busy spell) must not stop the action.
            try:
                await self.outbox.call("answerCallbackQuery", lambda: query.answer(toast[:200]))
            except TelegramError as exc:
                log.warning("could not answer a button press: %s", exc)

        await (await self.engine()).handle_press(press, answer)

    async def _error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        incident = secrets.token_hex(4)
        log.error("incident %s while handling an update", incident, exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            chat = ChatRef(TRANSPORT, str(update.effective_chat.id))
            text = f"Something went wrong (incident <code>{incident}</code>). It is logged."
            with contextlib.suppress(TelegramError):
                await self.outbox.send(chat, Reply(text))
        summary = type(context.error).__name__ if context.error else "unknown error"
        engine = await self.engine()
        await engine.report_incident(incident, f"Telegram update failed: {esc(summary)}")


def _once_sent(
    work: Callable[[], None],
) -> Callable[[str, dict[str, object]], Coroutine[Any, Any, None]]:
    async def trace(event: str, _info: dict[str, object]) -> None:
        if event.endswith("send_request_body.complete"):  # http11., or http2.
            work()

    return trace


def _command_mention(message: Message) -> str | None:
    """The ``bot`` of ``/cmd@bot`` ("" when absent), or None when this is no command."""
    for entity in message.entities:
        if entity.type == "bot_command" and entity.offset == 0:
            command = (message.text or "")[: entity.length]
            return command.partition("@")[2]
    return None


def _confirm_action(prompt: Message, bot_id: int) -> str | None:
    """The ``cf:<nonce>`` of a prompt this bot sent, while it still shows its buttons."""
    if prompt.from_user is None or prompt.from_user.id != bot_id or prompt.reply_markup is None:
        return None
    for row in prompt.reply_markup.inline_keyboard:
        for button in row:
            data = button.callback_data
            if isinstance(data, str) and data.startswith(f"{CONFIRM}:"):
                return data
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _polling_error(error: TelegramError) -> None:
    # The polling loop retries by itself; this only keeps the log short and readable.
    log.warning("polling: %s", error)


def _menu(specs: list[CommandSpec], server: str = "") -> list[BotCommand]:
    """One menu entry per command; a subcommand (``/sshkey add``) lists its command once.
    Each entry names the server: in a group, the menus of several Stewards show together."""
    menu: dict[str, str] = {}
    head_of = f"{server} · " if server else ""
    for spec in specs:
        head, _, sub = spec.name.partition(" ")
        if head not in menu or not sub:
            menu[head] = (head_of + spec.summary)[:256]
    return [BotCommand(name, summary) for name, summary in menu.items()]

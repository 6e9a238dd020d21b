"""The loopback Bot API fake, checked with python-telegram-bot's own Bot."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from tests.support.fake_telegram import FakeBotAPI, parse_html

ALICE_ID = 1001


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as api:
        yield api


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url) as client:
        yield client


def keyboard(*datas: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d.title(), callback_data=d) for d in datas]])


async def test_get_me_answers_with_the_bot_user(fake: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot
    assert me.username == "steward_test_bot"
    assert me.id == 123
    assert [call.method for call in fake.calls] == ["getMe", "getMe"]  # initialize, then ours


async def test_send_message_renders_html_and_records_the_options(
    fake: FakeBotAPI, bot: Bot
) -> None:
    asked = fake.send_text(fake.user(ALICE_ID, "Alice"), "/status")
    sent = await bot.send_message(
        ALICE_ID,
        "<b>nginx</b> is &lt;up&gt; &amp; <code>active</code>",
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard("restart"),
        disable_notification=True,
        protect_content=True,
        reply_parameters=ReplyParameters(asked["message_id"]),
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    assert sent.text == "nginx is <up> & active"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 5),
        ("code", 16, 6),
    ]
    assert sent.from_user is not None
    assert sent.from_user.is_bot
    assert sent.reply_markup == keyboard("restart")
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.message_id == asked["message_id"]
    assert sent.has_protected_content

    (stored,) = fake.messages(ALICE_ID)
    assert stored.message_id == sent.message_id
    assert stored.text == "nginx is <up> & active"
    assert stored.source == "<b>nginx</b> is &lt;up&gt; &amp; <code>active</code>"
    assert stored.parse_mode == "HTML"
    assert stored.disable_notification
    assert stored.protect_content
    assert stored.reply_to == asked["message_id"]
    assert stored.link_preview_options == {"is_disabled": True}
    assert stored.buttons == [{"text": "Restart", "callback_data": "restart"}]
    assert fake.texts(ALICE_ID) == ["nginx is <up> & active"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("load < 5", 'Can\'t parse entities: unsupported start tag "" at byte offset 5'),
        ("<br>", 'Can\'t parse entities: unsupported start tag "br" at byte offset 0'),
        ("<b>open", "Can't parse entities: can't find end tag corresponding to start tag"),
        ("R&D", 'Can\'t parse entities: character "&" must be escaped'),
    ],
)
async def test_html_that_telegram_cannot_parse_is_refused(
    fake: FakeBotAPI, bot: Bot, text: str, reason: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ALICE_ID, text, parse_mode=ParseMode.HTML)
    assert caught.value.message.startswith(reason)
    assert fake.messages(ALICE_ID) == []
    assert fake.calls[-1].status == 400


@pytest.mark.parametrize(
    ("text", "markup", "reason"),
    [
        ("  \n", None, "Message text is empty"),
        ("<b></b>", None, "Message text is empty"),
        ("x" * 4097, None, "Message is too long"),
        ("ok", keyboard("x" * 65), "Button_data_invalid"),
    ],
)
async def test_text_and_buttons_are_checked_like_telegram_does(
    bot: Bot, text: str, markup: InlineKeyboardMarkup | None, reason: str
) -> None:
    with pytest.raises(BadRequest, match=reason):
        await bot.send_message(ALICE_ID, text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def test_length_counts_text_after_entity_parsing(bot: Bot) -> None:
    sent = await bot.send_message(ALICE_ID, "<b>" + "&amp;" * 4096 + "</b>", parse_mode="HTML")
    assert sent.text == "&" * 4096


async def test_an_identical_edit_is_not_modified(fake: FakeBotAPI, bot: Bot) -> None:
    sent = await bot.send_message(ALICE_ID, "<i>working</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message is not modified: specified new message content"):
        await bot.edit_message_text(
            "<i>working</i>", chat_id=ALICE_ID, message_id=sent.message_id, parse_mode="HTML"
        )
    # the same rendered content written differently is still the same content
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text(
            "<em>working</em>", chat_id=ALICE_ID, message_id=sent.message_id, parse_mode="HTML"
        )
    edited = await bot.edit_message_text(
        "<i>working</i>",
        chat_id=ALICE_ID,
        message_id=sent.message_id,
        parse_mode="HTML",
        reply_markup=keyboard("stop"),
    )
    assert not isinstance(edited, bool)
    assert edited.reply_markup == keyboard("stop")
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE_ID, message_id=999)

    (stored,) = fake.messages(ALICE_ID)
    assert [edit.reply_markup for edit in stored.edits] == [
        {"inline_keyboard": [[{"text": "Stop", "callback_data": "stop"}]]}
    ]
    assert stored.edits[0].method == "editMessageText"
    await bot.delete_message(ALICE_ID, sent.message_id)
    assert fake.message(ALICE_ID, sent.message_id).deleted
    assert fake.texts(ALICE_ID) == []


async def test_429_surfaces_as_retry_after(
    fake: FakeBotAPI, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # else reading retry_after warns
    fake.fail("sendMessage", status=429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE_ID, "hello")
    assert caught.value.retry_after == timedelta(seconds=7)
    assert (await bot.send_message(ALICE_ID, "hello")).text == "hello"
    assert [call.status for call in fake.calls_to("sendMessage")] == [429, 200]


async def test_a_502_with_nginx_html_and_a_dropped_connection_are_network_errors(
    fake: FakeBotAPI, bot: Bot
) -> None:
    fake.fail("sendMessage", status=502, times=1)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(ALICE_ID, "hello")
    fake.drop("sendmessage")
    with pytest.raises(NetworkError, match="disconnected"):
        await bot.send_message(ALICE_ID, "hello")
    assert (await bot.send_message(ALICE_ID, "hello")).text == "hello"
    assert [call.status for call in fake.calls_to("sendMessage")] == [502, 0, 200]


async def test_get_updates_long_polls_and_honours_the_offset(fake: FakeBotAPI, bot: Bot) -> None:
    alice = fake.user(ALICE_ID, "Alice", "alice")
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for_async(lambda f: f.getupdates_count >= 1, timeout=2)
    fake.send_text(alice, "first")
    (update,) = await poll
    assert time.monotonic() - started < 1.5  # woken by the update, not by the timeout
    assert update.message is not None
    assert update.message.text == "first"
    assert update.effective_user is not None
    assert update.effective_user.username == "alice"

    fake.send_text(alice, "second")
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [update.update_id, update.update_id + 1]
    confirmed = await bot.get_updates(offset=again[-1].update_id + 1, timeout=0)
    assert confirmed == ()
    assert fake.pending_updates == []

    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 < time.monotonic() - started < 1.8


async def test_backlog_messages_keep_their_date(fake: FakeBotAPI, bot: Bot) -> None:
    old = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    fake.send_text(fake.user(ALICE_ID), "/restart nginx", date=old)
    (update,) = await bot.get_updates()
    assert update.message is not None
    assert update.message.date == old


async def test_a_command_carries_a_bot_command_entity(fake: FakeBotAPI, bot: Bot) -> None:
    alice = fake.user(ALICE_ID, "Alice")
    fake.send_text(alice, "/logs@steward_test_bot nginx 50", chat_id=-1001, chat_type="supergroup")
    (update,) = await bot.get_updates()
    message = update.message
    assert message is not None
    assert message.chat.type == "supergroup"
    entity = message.entities[0]
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 22)
    assert message.parse_entity(entity) == "/logs@steward_test_bot"


async def test_send_document_uploads_the_bytes_intact(fake: FakeBotAPI, bot: Bot) -> None:
    content = bytes(range(256)) * 40 + "é\r\n".encode()
    sent = await bot.send_document(
        ALICE_ID,
        content,
        filename="journal.txt",
        caption="<b>journal</b> for nginx",
        parse_mode="HTML",
    )
    assert sent.document is not None
    assert sent.document.file_name == "journal.txt"
    assert sent.document.file_size == len(content)
    assert sent.caption == "journal for nginx"

    (stored,) = fake.messages(ALICE_ID)
    assert stored.document is not None
    assert stored.document.content == content
    assert stored.document.filename == "journal.txt"
    assert stored.caption == "journal for nginx"
    (call,) = fake.calls_to("sendDocument")
    assert call.params["document"]["size"] == len(content)


async def test_a_press_becomes_a_callback_query_to_answer_once(fake: FakeBotAPI, bot: Bot) -> None:
    alice = fake.user(ALICE_ID, "Alice")
    prompt = await bot.send_message(ALICE_ID, "Restart nginx?", reply_markup=keyboard("yes", "no"))
    query_id = fake.press(alice, prompt.message_id, "yes")
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None
    assert query.id == query_id
    assert query.data == "yes"
    assert query.message is not None
    assert query.message.message_id == prompt.message_id
    assert query.from_user.id == ALICE_ID

    assert await query.answer("Confirmed.", show_alert=True)
    (answer,) = fake.callback_answers
    assert (answer.callback_query_id, answer.text, answer.show_alert) == (
        query_id,
        "Confirmed.",
        True,
    )
    with pytest.raises(BadRequest, match="Query is too old"):
        await query.answer()
    with pytest.raises(ValueError, match="no button"):
        fake.press(alice, prompt.message_id, "maybe")


async def test_commands_are_kept_per_scope(fake: FakeBotAPI, bot: Bot) -> None:
    menu = [BotCommand("status", "Show the server"), BotCommand("logs", "Read a journal")]
    assert await bot.set_my_commands(menu, scope=BotCommandScopeChat(ALICE_ID))
    assert await bot.set_my_commands([BotCommand("help", "What I can do")])

    mine = await bot.get_my_commands(scope=BotCommandScopeChat(ALICE_ID))
    assert [c.command for c in mine] == ["status", "logs"]
    assert [c["command"] for c in fake.commands({"type": "chat", "chat_id": ALICE_ID})] == [
        "status",
        "logs",
    ]
    assert [c["command"] for c in fake.commands()] == ["help"]
    assert await bot.get_my_commands(scope=BotCommandScopeChat(2002)) == ()

    assert await bot.delete_my_commands()
    assert fake.commands() == []
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])


async def test_down_refuses_connections_until_up(fake: FakeBotAPI, bot: Bot) -> None:
    port = fake.port
    await bot.get_me()
    fake.down()
    with pytest.raises(NetworkError):
        await bot.get_me()
    fake.send_text(fake.user(ALICE_ID), "queued while down")
    fake.up()
    assert fake.port == port
    assert (await bot.get_me()).username == "steward_test_bot"
    (update,) = await bot.get_updates()
    assert update.message is not None
    assert update.message.text == "queued while down"


async def test_a_wrong_token_is_unauthorized(fake: FakeBotAPI) -> None:
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with Bot("123:WRONG", base_url=fake.base_url):
            pass
    assert [(call.method, call.status) for call in fake.calls] == [("getMe", 401)]


async def test_raw_requests_json_get_and_unknown_methods(fake: FakeBotAPI) -> None:
    async with aiohttp.ClientSession() as http:
        url = fake.api_url
        async with http.post(f"{url}/SENDMESSAGE", json={"chat_id": 5, "text": "hi"}) as answer:
            assert answer.status == 200
            assert (await answer.json())["result"]["text"] == "hi"
        async with http.get(f"{url}/getMe") as answer:
            assert (await answer.json())["result"]["username"] == "steward_test_bot"
        async with http.post(f"{url}/sendTelepathy") as answer:
            assert answer.status == 404
            assert await answer.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with http.post(f"{fake.base_url}1:X/getMe") as answer:
            assert answer.status == 401
            assert (await answer.json())["description"] == "Unauthorized"
    assert [call.method for call in fake.calls] == [
        "sendMessage",
        "getMe",
        "sendTelepathy",
        "getMe",
    ]


async def test_wait_for_reports_the_recent_calls(fake: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(ALICE_ID, "hello")
    assert fake.wait_for(lambda f: f.messages(ALICE_ID), timeout=1)[0].text == "hello"
    with pytest.raises(AssertionError, match=r"(?s)within 0.1 s.*sendMessage"):
        fake.wait_for(lambda f: len(f.messages(ALICE_ID)) > 1, timeout=0.1)


def test_the_html_parser_follows_the_server() -> None:
    assert parse_html('<pre><code class="language-nix">{ }</code></pre>') == (
        "{ }",
        [{"type": "pre", "offset": 0, "length": 3, "language": "nix"}],
    )
    assert parse_html("😀 <s>x</s> &#x263A;") == (
        "😀 x ☺",
        [{"type": "strikethrough", "offset": 3, "length": 1}],
    )
    assert parse_html("R&D", strict_ampersand=False) == ("R&D", [])


async def test_strict_chats_and_a_second_poller() -> None:
    with FakeBotAPI(strict_chats=True) as strict:
        async with Bot(strict.token, base_url=strict.base_url) as client:
            with pytest.raises(BadRequest, match="Chat not found"):
                await client.send_message(ALICE_ID, "hello")
            strict.add_chat(ALICE_ID)
            assert (await client.send_message(ALICE_ID, "hello")).chat.type == "private"

            first = asyncio.create_task(client.get_updates(timeout=5))
            await strict.wait_for_async(lambda f: f.getupdates_count >= 1, timeout=2)
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{strict.api_url}/getUpdates", data={"timeout": "0"}) as answer,
            ):
                assert (await answer.json())["result"] == []
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await first


def _png(width: int, height: int) -> bytes:
    """A PNG's signature and header chunk: all the fake reads of a photo."""
    header = struct.pack(">II", width, height) + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + b"\0" * 4


async def test_send_photo_reads_the_size_and_refuses_what_is_not_an_image(
    fake: FakeBotAPI, bot: Bot
) -> None:
    sent = await bot.send_photo(ALICE_ID, _png(800, 400), filename="week.png")
    (size,) = sent.photo
    assert (size.width, size.height) == (800, 400)
    (stored,) = fake.messages(ALICE_ID)
    assert stored.document is not None
    assert stored.document.kind == "photo"
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(ALICE_ID, b"not an image", filename="x.png")
    with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
        await bot.send_photo(ALICE_ID, _png(100, 2500), filename="tall.png")

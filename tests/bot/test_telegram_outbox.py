"""When a reply is too long for one Telegram message (4,096 UTF-16 units after parsing), and
how files go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from telegram import Bot

from bot.transports.telegram_outbox import TelegramOutbox, _too_long
from handlers.core.messages import Attachment, ChatRef, Reply
from providers.charts.week import ChartData, render_week_chart
from tests.support.fake_telegram import FakeBotAPI


def test_html_that_renders_to_exactly_the_limit_fits() -> None:
    assert not _too_long("<b>" + "x" * 4096 + "</b>")


def test_one_character_over_the_limit_does_not_fit() -> None:
    assert _too_long("x" * 4097)


def test_entities_count_as_the_characters_they_stand_for() -> None:
    assert not _too_long("&lt;" * 4096)
    assert _too_long("&lt;" * 4097)


def test_characters_outside_the_bmp_count_twice() -> None:
    assert not _too_long("😀" * 2048)
    assert _too_long("😀" * 2049)


async def test_an_image_goes_as_a_photo_and_other_files_as_documents() -> None:
    """Through the loopback Bot API: the weekly chart shows inline, a log stays a file."""
    week = datetime(2026, 11, 21, tzinfo=UTC)
    png = await render_week_chart(ChartData("t", week, week + timedelta(days=7), {}))
    with FakeBotAPI() as fake:
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            outbox = TelegramOutbox(bot)
            chat = ChatRef("telegram", "1001")
            fake.user(1001, "Alice")
            reply = Reply(
                "📈 <b>Week</b>",
                attachments=(
                    Attachment("week.png", png, "image/png"),
                    Attachment("log.txt", b"a log line\n"),
                ),
                silent=True,
            )
            await outbox.send(chat, reply)
    (photo,) = fake.calls_to("sendPhoto")
    (document,) = fake.calls_to("sendDocument")
    assert photo.status == 200
    assert document.status == 200
    assert photo.params["disable_notification"] in (True, "true", "True")
    kinds = [m.document.kind for m in fake.messages(1001) if m.document is not None]
    assert kinds == ["photo", "document"]


async def test_a_flag_that_is_off_is_left_out_of_the_request_and_one_that_is_on_is_sent() -> None:
    with FakeBotAPI() as fake:
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            outbox = TelegramOutbox(bot)
            chat = ChatRef("telegram", "1001")
            fake.user(1001, "Alice")
            await outbox.send(chat, Reply("plain"))
            await outbox.send(chat, Reply("quiet, kept", silent=True, sensitive=True))
    plain, flagged = fake.calls_to("sendMessage")
    assert "disable_notification" not in plain.params
    assert "protect_content" not in plain.params
    assert flagged.params["disable_notification"] in (True, "true", "True")
    assert flagged.params["protect_content"] in (True, "true", "True")
    stored = fake.messages(1001)
    assert [(m.disable_notification, m.protect_content) for m in stored] == [
        (False, False),
        (True, True),
    ]

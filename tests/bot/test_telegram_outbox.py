"""When a reply is too long for one Telegram message (4,096 UTF-16 units after parsing)."""

from __future__ import annotations

from bot.transports.telegram_outbox import _too_long


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

"""The Matrix transport's parts that need no homeserver: what it stores, and how it renders.

The transport itself is tested end to end against a real Synapse in tests/e2e/test_matrix.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.storage.database import Database
from bot.storage.stores import SqlKeyValue
from bot.transports.matrix import _REPLY_FALLBACK
from bot.transports.matrix_state import MatrixState, Prompt, Session
from bot.transports.render import to_matrix_html, to_plain
from tests.conftest import FakeClock

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


# -- the key-value store's atomic add and purge -------------------------------------------------


async def test_add_inserts_only_once_even_when_racing(db: Database) -> None:
    kv = SqlKeyValue(db)
    results = await asyncio.gather(*(kv.add("matrix:seen:$e1", str(n), NOW) for n in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert await kv.get("matrix:seen:$e1") == str(winner)
    assert await kv.add("matrix:seen:$e2", "", NOW) is True


async def test_purge_drops_only_old_keys_under_the_prefix(db: Database) -> None:
    kv = SqlKeyValue(db)
    await kv.set("matrix:seen:old", "", NOW - timedelta(days=3))
    await kv.set("matrix:seen:new", "", NOW)
    await kv.set("matrix:seenX", "", NOW - timedelta(days=3))  # another prefix
    await kv.set("matrix_seen:%", "", NOW - timedelta(days=3))  # LIKE wildcards are literal
    await kv.set("matrix:next_batch", "s1", NOW - timedelta(days=3))

    assert await kv.purge("matrix:seen:", NOW - timedelta(days=2)) == 1
    assert await kv.get("matrix:seen:old") is None
    for kept in ("matrix:seen:new", "matrix:seenX", "matrix_seen:%", "matrix:next_batch"):
        assert await kv.get(kept) is not None, kept
    assert await kv.purge("matrix_", NOW) == 1  # "_" is no wildcard either


# -- MatrixState ------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_the_session_round_trips_and_a_corrupt_one_reads_as_none(
    sqlite_db: Database, clock: FakeClock
) -> None:
    kv = SqlKeyValue(sqlite_db)
    state = MatrixState(kv, clock)
    assert await state.session() is None
    session = Session("https://hs.example", "@steward:example", "DEVICE", "syt_token")
    await state.save_session(session)
    assert await state.session() == session

    await kv.set("matrix:session", "{not json", clock())
    assert await state.session() is None
    await kv.set("matrix:session", '{"user_id": "@x:y"}', clock())
    assert await state.session() is None


async def test_an_event_is_seen_for_the_first_time_once(
    sqlite_db: Database, clock: FakeClock
) -> None:
    state = MatrixState(SqlKeyValue(sqlite_db), clock)
    assert await state.first_sight("$a") is True
    assert await state.first_sight("$a") is False
    assert await state.first_sight("$b") is True
    # A fresh MatrixState on the same database (a restart) remembers.
    assert await MatrixState(SqlKeyValue(sqlite_db), clock).first_sight("$a") is False


async def test_prompts_are_found_by_event_and_by_code_in_any_case(
    sqlite_db: Database, clock: FakeClock
) -> None:
    state = MatrixState(SqlKeyValue(sqlite_db), clock)
    assert await state.reserve_code("ABC234") is True
    assert await state.reserve_code("ABC234") is False  # taken: the outbox draws again
    prompt = Prompt("!room:hs", "ABC234", "cf:n1", "cx:n1", ("$r1", "$r2"))
    await state.save_prompt("$prompt", prompt)

    assert await state.prompt("$prompt") == prompt
    assert await state.prompt_by_code("abc234") == ("$prompt", prompt)
    assert await state.prompt_by_code("ZZZZZZ") is None

    await state.forget_prompt("$prompt", prompt)
    assert await state.prompt("$prompt") is None
    assert await state.prompt_by_code("ABC234") is None


async def test_a_reserved_code_without_a_prompt_finds_nothing(
    sqlite_db: Database, clock: FakeClock
) -> None:
    """A crash between reserving a code and sending the prompt leaves a code that leads
    nowhere, never to another prompt."""
    state = MatrixState(SqlKeyValue(sqlite_db), clock)
    await state.reserve_code("QWERTY")
    assert await state.prompt_by_code("QWERTY") is None


async def test_tidy_forgets_what_is_older_than_two_days_and_keeps_the_rest(
    sqlite_db: Database, clock: FakeClock
) -> None:
    kv = SqlKeyValue(sqlite_db)
    state = MatrixState(kv, clock)
    await state.save_session(Session("https://hs", "@s:hs", "D", "t"))
    await state.save_next_batch("s42")
    await state.first_sight("$old")
    await state.save_prompt("$p-old", Prompt("!r", "OLDOLD", "cf:a", "cx:a"))
    clock.advance(days=3)
    await state.first_sight("$new")

    assert await state.tidy() == 3  # the claim, the code and the prompt
    assert await state.first_sight("$old") is True  # forgotten
    assert await state.first_sight("$new") is False
    assert await state.prompt("$p-old") is None
    assert await state.session() is not None
    assert await state.next_batch() == "s42"


# -- rendering ----------------------------------------------------------------------------------


def test_matrix_html_breaks_lines_outside_pre_only() -> None:
    text = "<b>a</b>\nb\n<pre>x\ny</pre>\nc"
    assert to_matrix_html(text) == "<b>a</b><br>\nb<br>\n<pre>x\ny</pre><br>\nc"
    assert to_plain(text) == "a\nb\nx\ny\nc"


def test_matrix_html_leaves_escaped_text_alone() -> None:
    text = "&lt;pre&gt;\nnot a block"
    assert to_matrix_html(text) == "&lt;pre&gt;<br>\nnot a block"


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("!status", "!status"),
        ("> <@alice:hs> !restart nextcloud\n\n!confirm ABC234", "!confirm ABC234"),
        ("> <@alice:hs> line one\n> line two\n\n/status", "/status"),
        (
            "> not a fallback without a blank line\n!status",
            "> not a fallback without a blank line\n!status",
        ),
    ],
)
def test_a_reply_fallback_is_cut_before_parsing(body: str, command: str) -> None:
    assert _REPLY_FALLBACK.sub("", body, count=1) == command

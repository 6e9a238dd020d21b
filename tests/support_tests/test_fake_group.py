"""The shared group of fake bots: who receives whose messages, checked with PTB's own Bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack

import pytest
from telegram import Bot, ReplyParameters
from telegram.error import BadRequest

from tests.support.fake_group import FakeGroup
from tests.support.fake_telegram import JSON, FakeBotAPI

GROUP = -1009876543210
ALICE = FakeBotAPI.user(1001, "Alice", "alice")


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeBotAPI]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(FakeBotAPI(f"{number}:AAtest{name}", username=f"{name}_bot"))
            for number, name in ((501, "alpha"), (502, "bravo"), (503, "charlie"))
        }


@pytest.fixture
async def clients(fakes: dict[str, FakeBotAPI]) -> AsyncIterator[dict[str, Bot]]:
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(Bot(fake.token, base_url=fake.base_url))
            for name, fake in fakes.items()
        }


def received(fake: FakeBotAPI) -> list[str]:
    return [u["message"].get("text", "") for u in fake.pending_updates if "message" in u]


def group_of(fakes: dict[str, FakeBotAPI], **admins: bool) -> FakeGroup:
    group = FakeGroup(GROUP)
    for name, fake in fakes.items():
        group.add(fake, admin=admins.get(name, False))
    return group


async def post(client: Bot, text: str, reply_to: int | None = None) -> JSON:
    replying = ReplyParameters(reply_to) if reply_to is not None else None
    sent = await client.send_message(GROUP, text, reply_parameters=replying)
    return {"message_id": sent.message_id, "from": sent.from_user.id if sent.from_user else 0}


async def test_without_the_mode_bots_never_see_each_other(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group_of(fakes, alpha=True, bravo=True, charlie=True)
    fakes["bravo"].privacy_mode = False

    first = await post(clients["alpha"], "/status@bravo_bot from alpha")
    await post(clients["alpha"], "a reply", reply_to=first["message_id"])

    assert received(fakes["bravo"]) == []
    assert received(fakes["charlie"]) == []


async def test_a_command_mention_or_a_reply_reaches_its_bot_when_one_has_the_mode(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group_of(fakes)
    fakes["alpha"].bot_to_bot = True  # only the sender has it

    await post(clients["alpha"], "/fleet@bravo_bot")
    bravos = await post(clients["bravo"], "bravo speaks")
    await post(clients["alpha"], "to bravo", reply_to=bravos["message_id"])
    await post(clients["alpha"], "to nobody in particular")

    assert received(fakes["bravo"]) == ["/fleet@bravo_bot", "to bravo"]
    assert received(fakes["charlie"]) == []
    assert received(fakes["alpha"]) == []  # neither admin nor privacy off: no plain messages


async def test_a_bot_with_the_mode_sees_every_bot_message_as_admin_or_without_privacy(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group_of(fakes, alpha=True)
    for fake in fakes.values():
        fake.bot_to_bot = True
    fakes["bravo"].privacy_mode = False  # charlie: neither admin nor privacy off

    await post(clients["charlie"], "charlie's heartbeat")
    await post(clients["alpha"], "alpha's heartbeat")

    assert received(fakes["alpha"]) == ["charlie's heartbeat"]
    assert received(fakes["bravo"]) == ["charlie's heartbeat", "alpha's heartbeat"]
    assert received(fakes["charlie"]) == []


async def test_people_reach_bots_by_privacy_mode_and_ids_are_the_groups(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group = group_of(fakes, alpha=True)
    fakes["bravo"].privacy_mode = False

    said = group.say(ALICE, "/status")
    named = group.say(ALICE, "/status@charlie_bot")
    chat = group.say(ALICE, "good morning")

    assert received(fakes["alpha"]) == ["/status", "/status@charlie_bot", "good morning"]
    assert received(fakes["bravo"]) == ["/status", "/status@charlie_bot", "good morning"]
    assert received(fakes["charlie"]) == ["/status@charlie_bot"]
    answer = await post(clients["charlie"], "up 3 days", reply_to=said["message_id"])
    assert [said["message_id"], named["message_id"], chat["message_id"]] == [1, 2, 3]
    assert answer["message_id"] == 4  # one count for the whole group
    assert (await clients["charlie"].get_me()).can_read_all_group_messages is False
    assert (await clients["bravo"].get_me()).can_read_all_group_messages is True


async def test_a_bare_command_reaches_a_private_bot_that_posted_last(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group = group_of(fakes)
    await post(clients["bravo"], "bravo was here")

    group.say(ALICE, "/help")

    assert received(fakes["bravo"]) == ["/help"]
    assert received(fakes["alpha"]) == []


async def test_a_deleted_message_can_no_longer_be_replied_to(
    fakes: dict[str, FakeBotAPI], clients: dict[str, Bot]
) -> None:
    group = group_of(fakes)
    beat = await post(clients["alpha"], "beat")

    await clients["alpha"].delete_message(GROUP, beat["message_id"])

    assert [m["message_id"] for m in group.history()] == []
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await post(clients["bravo"], "late", reply_to=beat["message_id"])

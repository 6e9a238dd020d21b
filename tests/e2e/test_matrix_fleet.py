"""Several servers in one Matrix room: three `steward run` processes, one real Synapse.

Each Steward has its own account, database and demo server, and a name; the room is the only
thing they share. They learn of each other from what they send there.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.matrix_harness import MatrixBots, Message, Person, settle
from tests.support.synapse import Synapse, unique

NAMES = ("alpha", "bravo", "charlie")
CODE = re.compile(r"!confirm ([A-Z0-9]{6})")
BEAT = "3"  # seconds: a Steward silent for longer is overdue


@pytest.fixture
async def alice(synapse: Synapse) -> AsyncIterator[Person]:
    person = Person(synapse, synapse.register(unique("alice"), "alice-password"))
    yield person
    await person.close()


@pytest.fixture
def fleet(synapse: Synapse, alice: Person, tmp_path: Path) -> Iterator[dict[str, MatrixBots]]:
    """Three Stewards, not started; each stopped and checked afterwards."""
    made = {
        name: MatrixBots(
            synapse,
            synapse.register(unique(f"steward-{name}"), f"{name}-password-Zq81"),
            tmp_path / name,
            admins=alice.user_id,
            name=name,
            fleet_heartbeat_seconds=BEAT,
        )
        for name in NAMES
    }
    try:
        yield made
    finally:
        for bots in made.values():
            bots.close()


async def shared_room(fleet: dict[str, MatrixBots], alice: Person) -> str:
    """Started in reverse name order, so that name order is not the order they came in."""
    for name in reversed(NAMES):
        fleet[name].start()
    accounts = [bots.bot.user_id for bots in fleet.values()]
    room = await alice.create_room(*accounts)
    await alice.wait(lambda: set(accounts) <= alice.members_joined(room), label="bots join")

    def hellos_answered() -> bool:
        beats = [e for e in alice.timeline.get(room, []) if e["type"] == "org.steward.heartbeat"]
        # Each says hello as it joins; the ones already there answer a newcomer once.
        return len(beats) >= 6

    await alice.wait(hellos_answered, label="the Stewards greet each other")
    return room


def answers(alice: Person, fleet: dict[str, MatrixBots], room: str, asked: str) -> list[Message]:
    found = [
        message
        for bots in fleet.values()
        for message in alice.reply_to(room, bots.bot.user_id, asked)
    ]
    return sorted(found, key=lambda m: m.sent_at)


def name_of(fleet: dict[str, MatrixBots], message: Message) -> str:
    return next(name for name, bots in fleet.items() if bots.bot.user_id == message.sender)


async def test_status_is_answered_by_each_steward_in_name_order(
    fleet: dict[str, MatrixBots], alice: Person
) -> None:
    room = await shared_room(fleet, alice)

    asked = await alice.say(room, "!status")
    await alice.wait(lambda: len(answers(alice, fleet, room, asked)) == 3, label="3 answers")
    table = answers(alice, fleet, room, asked)

    assert [name_of(fleet, m) for m in table] == list(NAMES)
    for name, line in zip(NAMES, table, strict=True):
        assert "\n" not in line.body.strip()  # one line each: the room reads as one table
        assert f"{name} up " in line.body
        assert "failed units" in line.body


async def test_fleet_lists_the_others_with_their_version(
    fleet: dict[str, MatrixBots], alice: Person
) -> None:
    room = await shared_room(fleet, alice)

    asked = await alice.say(room, "!fleet @bravo")
    (reply,) = await alice.wait(lambda: answers(alice, fleet, room, asked), label="/fleet")

    assert name_of(fleet, reply) == "bravo"
    lines = reply.body.splitlines()
    assert "bravo" in lines[0]
    assert "this one" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["alpha", "charlie"]
    assert all("seen" in line and "overdue" not in line for line in lines[1:])
    await settle(1.0)
    await alice.sync()
    assert len(answers(alice, fleet, room, asked)) == 1  # the others stayed silent


async def test_an_addressed_command_is_answered_by_that_steward_alone(
    fleet: dict[str, MatrixBots], alice: Person
) -> None:
    room = await shared_room(fleet, alice)

    first = await alice.say(room, "!bravo restart nextcloud")
    second = await alice.say(room, "!restart nextcloud @charlie")
    (prompt,) = await alice.wait(lambda: answers(alice, fleet, room, first), label="a prompt")
    await alice.wait(lambda: answers(alice, fleet, room, second), label="a second prompt")
    await settle(1.5)
    await alice.sync()

    assert name_of(fleet, prompt) == "bravo"
    assert [name_of(fleet, m) for m in answers(alice, fleet, room, second)] == ["charlie"]
    assert fleet["alpha"].count("confirmations") == 0
    assert fleet["alpha"].count("audit_log", "command = 'restart'") == 0
    assert fleet["bravo"].count("confirmations") == 1
    assert fleet["charlie"].count("confirmations") == 1


async def test_a_confirmation_on_another_stewards_prompt_runs_nothing_here(
    fleet: dict[str, MatrixBots], alice: Person
) -> None:
    room = await shared_room(fleet, alice)
    bravo = fleet["bravo"].bot.user_id

    async def bravo_prompt() -> Message:
        asked = await alice.say(room, "!bravo restart nextcloud")
        (prompt,) = await alice.wait(lambda: answers(alice, fleet, room, asked), label="prompt")
        return prompt

    # The ✅ and the code are seen by all three Stewards; only bravo holds those prompts.
    await alice.react(room, (await bravo_prompt()).event_id, "✅")
    found = CODE.search((await bravo_prompt()).body)
    assert found is not None
    await alice.say(room, f"!confirm {found.group(1)}")
    await alice.wait(
        lambda: len([m for m in alice.messages(room, bravo) if "restarted" in m.body]) == 2,
        label="bravo restarts twice",
    )
    await settle(1.5)
    await alice.sync()

    for name in ("alpha", "charlie"):
        bots = fleet[name]
        assert alice.messages(room, bots.bot.user_id) == [], name  # not even a refusal
        assert bots.count("confirmations") == 0
        assert bots.count("audit_log", "command IN ('restart', 'confirm')") == 0
    assert fleet["bravo"].count("audit_log", "event = 'confirmed'") == 2


async def test_a_watched_steward_that_dies_is_reported_by_its_neighbour(
    fleet: dict[str, MatrixBots], alice: Person
) -> None:
    fleet["alpha"].settings["watch"] = "charlie"
    room = await shared_room(fleet, alice)
    charlie = fleet["charlie"]

    charlie.kill(charlie.processes[-1])

    alpha = fleet["alpha"].bot.user_id
    (alert,) = await alice.wait(
        lambda: [m for m in alice.messages(room, alpha) if "silent" in m.body],
        within=30.0,
        label="alpha's alert",
    )
    assert "charlie" in alert.body
    assert "alpha" in alert.body
    assert alice.user_id in alert.mentions  # an alert pings the admins
    assert not [m for m in alice.messages(room, fleet["bravo"].bot.user_id) if "silent" in m.body]

"""How the Matrix outbox renders buttons that run a command (an alert's Snooze), against the
real Synapse: the commands to send are named in the text, sends and edits alike, and they are
no reactions; a confirmation's ✅/❌ still are, and an edit that leaves only run-buttons closes
the confirmation prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.storage.database import Database
from bot.storage.stores import SqlKeyValue
from bot.transports.matrix_outbox import MatrixOutbox
from bot.transports.matrix_state import MatrixState
from handlers.core.messages import Button, ChatRef, MessageRef, Reply
from tests.e2e.matrix_harness import Message, Person
from tests.support.synapse import Synapse, unique

pytestmark = pytest.mark.timeout(90)

RUNS = (
    Button.run("Snooze 1h", "snooze a3f09c"),
    Button.run("Mute 24h", "mute a3f09c"),
    Button.run("Details", "details a3f09c"),
)
LINE = "!snooze a3f09c · !mute a3f09c · !details a3f09c"


@pytest.fixture
async def pair(synapse: Synapse) -> AsyncIterator[tuple[Person, Person]]:
    """(the bot's client, alice reading the room)"""
    bot = Person(synapse, synapse.register(unique("outbox"), "outbox-password-7Qe"))
    alice = Person(synapse, synapse.register(unique("alice"), "alice-password"))
    try:
        yield bot, alice
    finally:
        await bot.close()
        await alice.close()


async def room_with(bot: Person, alice: Person) -> str:
    room = await alice.create_room(bot.user_id)
    await bot.join(room)
    return room


async def shown(alice: Person, room: str, bot: Person, event_id: str, text: str) -> Message:
    found = await alice.wait(
        lambda: alice.find(room, bot.user_id, text, event_id), label=f"message with {text!r}"
    )
    return found[0]


async def test_run_buttons_are_the_commands_to_send_and_no_reactions(
    pair: tuple[Person, Person], sqlite_db: Database
) -> None:
    bot, alice = pair
    room = await room_with(bot, alice)
    outbox = MatrixOutbox(bot.client, MatrixState(SqlKeyValue(sqlite_db)))
    ref = await outbox.send(ChatRef("matrix", room), Reply("⚠️ <b>Warning</b>: disk", RUNS))
    message = await shown(alice, room, bot, ref.message_id, LINE)
    assert message.body == f"⚠️ Warning: disk\n{LINE}"
    assert "<code>!snooze a3f09c</code> · <code>!mute a3f09c</code>" in message.html
    assert "React" not in message.body  # no confirmation hint
    assert alice.reactions(room, ref.message_id) == set()
    assert await outbox.state.prompt(ref.message_id) is None

    # An edit that keeps the buttons keeps the commands; one without them drops the line.
    await outbox.edit(ref, Reply("⚠️ <b>Warning</b>: disk (still)", RUNS))
    edited = await shown(alice, room, bot, ref.message_id, "(still)")
    assert edited.body == f"⚠️ Warning: disk (still)\n{LINE}"
    await outbox.edit(ref, Reply("✅ Recovered: disk"))
    recovered = await shown(alice, room, bot, ref.message_id, "Recovered")
    assert recovered.body == "✅ Recovered: disk"


async def test_an_edit_to_run_buttons_only_closes_a_confirmation_prompt(
    pair: tuple[Person, Person], sqlite_db: Database
) -> None:
    bot, alice = pair
    room = await room_with(bot, alice)
    outbox = MatrixOutbox(bot.client, MatrixState(SqlKeyValue(sqlite_db)))
    decides = (Button("Confirm", "cf:nonce-1"), Button("Cancel", "cx:nonce-1"))
    ref = await outbox.send(ChatRef("matrix", room), Reply("<b>Confirm</b> /x", decides + RUNS))
    prompt = await outbox.state.prompt(ref.message_id)
    assert prompt is not None
    assert (prompt.confirm, prompt.cancel) == ("cf:nonce-1", "cx:nonce-1")
    message = await shown(alice, room, bot, ref.message_id, "!confirm")
    assert message.body.endswith(LINE)  # the hint first, then the commands
    await alice.wait(lambda: len(alice.reactions(room, ref.message_id)) == 2, label="✅ and ❌")

    await outbox.edit(MessageRef(ref.chat, ref.message_id), Reply("Done.", RUNS))
    await alice.wait(lambda: alice.reactions(room, ref.message_id) == set(), label="redactions")
    assert await outbox.state.prompt(ref.message_id) is None
    done = await shown(alice, room, bot, ref.message_id, "Done.")
    assert done.body == f"Done.\n{LINE}"

"""End to end on Matrix: `steward run` as its own process, real Synapse, real nio clients."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.matrix_harness import JSON, MatrixBots, Message, Person, settle
from tests.support.synapse import RegisteredUser, Synapse, unique

CODE = re.compile(r"!confirm ([A-Z0-9]{6})")
People = Callable[..., Person]


@pytest.fixture
def bot_user(synapse: Synapse) -> RegisteredUser:
    return synapse.register(unique("steward"), "bot-password-Zq81")


@pytest.fixture
async def people(synapse: Synapse, tmp_path: Path) -> AsyncIterator[People]:
    """Makes people (registered users with their own nio client); closes them afterwards."""
    made: list[Person] = []

    def person(name: str, *, e2ee: bool = False) -> Person:
        user = synapse.register(unique(name), f"{name}-password")
        made.append(Person(synapse, user, store=tmp_path / f"{name}-store" if e2ee else None))
        return made[-1]

    yield person
    for someone in made:
        await someone.close()


@pytest.fixture
def alice(people: People) -> Person:
    """An admin."""
    return people("alice")


@pytest.fixture
def olga(people: People) -> Person:
    """An operator."""
    return people("olga")


@pytest.fixture
def mallory(people: People) -> Person:
    """Nobody: a stranger."""
    return people("mallory")


@pytest.fixture
def bots(
    synapse: Synapse, bot_user: RegisteredUser, alice: Person, olga: Person, tmp_path: Path
) -> Iterator[MatrixBots]:
    runner = MatrixBots(synapse, bot_user, tmp_path, admins=alice.user_id,
                        operators=olga.user_id)  # fmt: skip
    try:
        yield runner
    finally:
        runner.close()


async def admin_room(bots: MatrixBots, alice: Person, *others: Person, **kw: bool) -> str:
    """A room Alice made, with the bot (joined on Alice's invite) and ``others`` in it."""
    room = await alice.create_room(bots.bot.user_id, *(p.user_id for p in others), **kw)
    for person in others:
        await person.join(room)
    await alice.wait(lambda: bots.bot.user_id in alice.members_joined(room), label="bot joins")
    return room


async def answer(person: Person, bots: MatrixBots, room: str, event_id: str) -> Message:
    found = await person.wait(
        lambda: person.reply_to(room, bots.bot.user_id, event_id), label="the bot's reply"
    )
    assert len(found) == 1, found
    return found[0]


async def prompt_for(person: Person, bots: MatrixBots, room: str, command: str) -> Message:
    asked = await person.say(room, command)
    prompt = await answer(person, bots, room, asked)
    await person.wait(
        lambda: (
            {(bots.bot.user_id, "✅"), (bots.bot.user_id, "❌")}
            <= person.reactions(room, prompt.event_id)
        ),
        label="the bot's reactions",
    )
    return prompt


# -- commands -----------------------------------------------------------------------------------


async def test_status_gets_a_notice_in_reply_with_either_prefix(
    bots: MatrixBots, alice: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice)

    for command in ("!status", "/status"):
        asked = await alice.say(room, command)
        reply = await answer(alice, bots, room, asked)
        assert reply.msgtype == "m.notice"
        assert "failed units: jicofo" in reply.body
        assert "<b>" in reply.html or "<code>" in reply.html
        assert "<br>" in reply.html  # line breaks survive HTML rendering
        assert "<" not in reply.body  # the plain body has no markup
    assert bots.count("audit_log", "command = 'status' AND result = 'ok'") == 2


async def test_a_stranger_gets_one_refusal_and_nothing_runs(
    bots: MatrixBots, alice: Person, mallory: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, mallory)

    first = await mallory.say(room, "!restart nextcloud")
    second = await mallory.say(room, "!status")
    refusal = await answer(mallory, bots, room, first)
    assert refusal.body == "Sorry, this is a private bot."
    await settle(1.5)
    await mallory.sync()
    assert mallory.reply_to(room, bots.bot.user_id, second) == []
    assert bots.count("confirmations") == 0
    rows = bots.query("SELECT command, result FROM audit_log WHERE event = 'refused'")
    assert sorted(rows) == [
        ("restart", "stranger"),
        ("status", "stranger (not answered: rate limit)"),
    ]


async def test_an_invite_from_a_stranger_is_declined(
    bots: MatrixBots, alice: Person, mallory: Person
) -> None:
    bots.start()
    room = await mallory.create_room(bots.bot.user_id)
    await mallory.wait(
        lambda: bots.count("audit_log", "command = 'invite' AND event = 'refused'") == 1,
        label="the refusal in the audit log",
    )
    await mallory.sync()
    assert bots.bot.user_id not in mallory.members_joined(room)
    # An admin's invite is accepted.
    await admin_room(bots, alice)


async def test_the_bot_ignores_its_own_and_other_notices_and_plain_talk(
    bots: MatrixBots, alice: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice)
    chatter = await alice.say(room, "hello there, no command here")
    notice = await alice.say(room, "!status", msgtype="m.notice")  # bots talk in notices
    asked = await alice.say(room, "!ping")
    await answer(alice, bots, room, asked)
    assert alice.reply_to(room, bots.bot.user_id, chatter) == []
    assert alice.reply_to(room, bots.bot.user_id, notice) == []


# -- confirmations ------------------------------------------------------------------------------


async def test_the_requesters_reaction_runs_the_action_once(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")
    assert "Confirm" in prompt.body
    assert CODE.search(prompt.body)

    await olga.react(room, prompt.event_id, "✅")
    await olga.react(room, prompt.event_id, "❌")  # too late: decided already
    outcome = await olga.wait(
        lambda: [m for m in olga.messages(room, bots.bot.user_id) if "restarted" in m.body],
        label="the outcome",
    )
    assert len(outcome) == 1
    closed = next(m for m in olga.messages(room, bots.bot.user_id) if m.event_id == prompt.event_id)
    await olga.wait(lambda: "Confirmed by" in closed.body or None, label="closed prompt")
    # The bot's own reactions are gone once it is decided, as a keyboard is removed.
    await olga.wait(
        lambda: not {r for r in olga.reactions(room, prompt.event_id) if r[0] == bots.bot.user_id},
        label="reactions redacted",
    )
    await olga.wait(lambda: bots.query("SELECT state FROM jobs") == [("succeeded",)])
    assert bots.count("jobs") == 1


async def test_a_strangers_reaction_does_nothing(
    bots: MatrixBots, alice: Person, olga: Person, mallory: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga, mallory)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")

    await mallory.react(room, prompt.event_id, "✅")
    await mallory.wait(
        lambda: bots.count("audit_log", "event = 'refused' AND result = 'stranger'") == 1,
        label="the refusal",
    )
    assert bots.query("SELECT state FROM confirmations") == [("pending",)]
    assert bots.count("jobs") == 0
    # Another member who may not confirm is told so, in reply to the prompt.
    await alice.react(room, prompt.event_id, "✅")
    told = await alice.wait(
        lambda: [
            m
            for m in alice.reply_to(room, bots.bot.user_id, prompt.event_id)
            if "can confirm" in m.body
        ],
        label="the refusal notice",
    )
    assert "Only" in told[0].body
    assert bots.query("SELECT state FROM confirmations") == [("pending",)]


async def test_a_two_person_command_needs_another_admins_reaction(
    bots: MatrixBots, people: People, alice: Person, olga: Person
) -> None:
    bob = people("bob")
    bots.start(two_person="restart", admins=f"{alice.user_id},{bob.user_id}")
    room = await admin_room(bots, alice, olga, bob)
    prompt = await prompt_for(alice, bots, room, "!restart nextcloud")
    assert "second admin" in prompt.body

    await alice.react(room, prompt.event_id, "✅")  # the requester alone is not enough
    told = await alice.wait(
        lambda: alice.find(room, bots.bot.user_id, "needs a second admin"), label="refusal"
    )
    assert told[0].reply_to == prompt.event_id
    await olga.react(room, prompt.event_id, "✅")  # an operator is no admin
    await olga.wait(lambda: olga.find(room, bots.bot.user_id, "Only an admin"), label="no")
    assert bots.query("SELECT state FROM confirmations") == [("pending",)]

    await bob.react(room, prompt.event_id, "✅")
    await alice.wait(lambda: bots.query("SELECT state FROM jobs") == [("succeeded",)])
    closed = await alice.wait(
        lambda: alice.find(room, bots.bot.user_id, "Confirmed by", prompt.event_id)
    )
    assert bob.user_id.lstrip("@").split(":")[0] in closed[0].body
    approver = bots.query("SELECT approver_id FROM audit_log WHERE event = 'confirmed'")
    assert approver == [(bob.user_id,)]


async def test_a_reaction_after_expiry_does_nothing(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")
    aged = bots.execute(
        "UPDATE confirmations SET expires_at = ? WHERE state = 'pending'",
        ("2020-01-01 00:00:00.000000",),
    )
    assert aged == 1

    await olga.react(room, prompt.event_id, "✅")
    await olga.wait(
        lambda: bots.query("SELECT state FROM confirmations") == [("expired",)], label="expired"
    )
    closed = await olga.wait(
        lambda: olga.find(room, bots.bot.user_id, "Expired", prompt.event_id),
        label="the closed prompt",
    )
    assert closed
    assert bots.count("jobs") == 0


async def test_confirm_by_code_works_and_a_wrong_code_is_refused(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")
    match = CODE.search(prompt.body)
    assert match is not None
    code = match.group(1)

    wrong = await olga.say(room, "!confirm ZZZZZZ")
    refused = await answer(olga, bots, room, wrong)
    assert "No confirmation waits for that code" in refused.body

    await olga.say(room, f"!confirm {code.lower()}")
    await olga.wait(lambda: bots.query("SELECT state FROM jobs") == [("succeeded",)])
    await olga.wait(
        lambda: olga.find(room, bots.bot.user_id, "Confirmed by", prompt.event_id),
        label="the closed prompt",
    )
    # The code is spent.
    again = await olga.say(room, f"!confirm {code}")
    assert "No confirmation waits" in (await answer(olga, bots, room, again)).body
    assert bots.count("jobs") == 1


async def test_cancel_by_reaction_or_by_code_runs_nothing(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga)
    first = await prompt_for(olga, bots, room, "!restart nextcloud")
    await olga.react(room, first.event_id, "❌")
    await olga.wait(
        lambda: olga.find(room, bots.bot.user_id, "Cancelled by", first.event_id), label="x"
    )

    second = await prompt_for(olga, bots, room, "!restart nextcloud")
    match = CODE.search(second.body)
    assert match is not None
    await alice.say(room, f"!cancel {match.group(1)}")  # an admin may cancel anyone's
    await olga.wait(
        lambda: olga.find(room, bots.bot.user_id, "Cancelled by", second.event_id), label="y"
    )
    assert bots.query("SELECT state FROM confirmations") == [("cancelled",), ("cancelled",)]
    assert bots.count("jobs") == 0


async def test_progress_is_one_message_edited_at_most_every_two_seconds(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start(demo_delay="1.5")
    room = await admin_room(bots, alice, olga)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")
    await olga.react(room, prompt.event_id, "✅")
    await olga.wait(lambda: bots.query("SELECT state FROM jobs") == [("succeeded",)], within=40)
    progress = await olga.wait(
        lambda: [m for m in olga.messages(room, bots.bot.user_id) if "restarted" in m.body],
        label="the outcome",
    )
    (message,) = progress
    assert message.edits, "the outcome is an edit of the progress message"
    stamps = [message.sent_at, *message.edits]
    assert all(b - a >= 1900 for a, b in itertools.pairwise(stamps)), stamps


# -- restarts, outages, history -----------------------------------------------------------------


async def test_history_from_before_the_first_start_is_never_executed(
    bots: MatrixBots, alice: Person, synapse: Synapse
) -> None:
    room = await alice.create_room(bots.bot.user_id)
    # The bot joins later; the command it will see in its first sync predates it.
    old = await alice.say(room, "!status")
    bots.start()
    await alice.wait(lambda: bots.bot.user_id in alice.members_joined(room), label="join")
    asked = await alice.say(room, "!ping")
    await answer(alice, bots, room, asked)
    assert alice.reply_to(room, bots.bot.user_id, old) == []


async def test_a_redelivered_sync_does_not_run_a_command_twice(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    first = bots.start()
    room = await admin_room(bots, alice, olga)
    before = bots.next_batch()
    asked = await olga.say(room, "!restart nextcloud")
    await answer(olga, bots, room, asked)
    # A crash after the command ran but before the sync token was stored: the next start
    # gets the same events again.
    bots.kill(first)
    bots.execute("UPDATE kv SET value = ? WHERE key = 'matrix:next_batch'", (before,))
    bots.start()
    ping = await olga.say(room, "!ping")
    await answer(olga, bots, room, ping)
    assert len(olga.reply_to(room, bots.bot.user_id, asked)) == 1
    assert bots.count("confirmations") == 1


async def test_a_restart_mid_job_reports_the_outcome_once_and_keeps_the_device(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    first = bots.start(demo_delay="2")
    device = bots.session_device()
    room = await admin_room(bots, alice, olga)
    prompt = await prompt_for(olga, bots, room, "!restart nextcloud")
    await olga.react(room, prompt.event_id, "✅")
    await olga.wait(lambda: bots.query("SELECT state FROM jobs") == [("running",)])
    bots.kill(first)

    bots.start(demo_delay="2")
    assert bots.session_device() == device  # the saved login was resumed: no new device
    await olga.wait(lambda: bots.query("SELECT state FROM jobs") == [("succeeded",)], within=40)
    await olga.wait(
        lambda: olga.find(room, bots.bot.user_id, "after the bot restarted"),
        label="the outcome",
    )
    assert bots.count("jobs") == 1
    assert bots.count("confirmations") == 1


async def test_the_bot_resumes_after_synapse_is_down_for_ten_seconds(
    bots: MatrixBots, alice: Person, synapse: Synapse
) -> None:
    bots.start()
    room = await admin_room(bots, alice)
    synapse.stop()
    await settle(10)
    synapse.start()
    asked = await alice.say(room, "!ping")
    reply = await answer(alice, bots, room, asked)
    assert "pong" in reply.body.lower()
    assert bots.processes[0].popen.poll() is None


async def test_the_bot_leaves_once_every_admin_has_left(
    bots: MatrixBots, alice: Person, olga: Person
) -> None:
    bots.start()
    room = await admin_room(bots, alice, olga)
    await alice.leave(room)
    await olga.wait(
        lambda: bots.bot.user_id not in olga.members_joined(room), label="the bot leaves"
    )
    await olga.wait(lambda: bots.count("audit_log", "command = 'leave'") == 1, label="audit")


async def test_a_refused_password_stops_the_bot_with_exit_2(bots: MatrixBots) -> None:
    process = bots.start(ready=False, matrix_password="not-the-password")
    assert process.wait_exit() == 2
    lines = process.stderr.splitlines()
    assert lines[-1].startswith("steward: STEWARD_MATRIX_PASSWORD: the login failed")
    assert "not-the-password" not in process.stderr
    assert "Traceback" not in process.stderr


async def test_a_bot_waiting_for_a_homeserver_that_is_down_stops_cleanly(
    bots: MatrixBots, synapse: Synapse
) -> None:
    synapse.stop()
    try:
        process = bots.start(ready=False)
        await settle(3)
        assert process.popen.poll() is None  # still waiting, not crashed
        assert bots.stop(process) == 0
    finally:
        synapse.start()
    assert bots.next_batch() is None


async def test_missing_matrix_settings_are_named(bots: MatrixBots) -> None:
    process = bots.start(ready=False, matrix_user="", matrix_password="")
    assert process.wait_exit() == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "steward: STEWARD_MATRIX_USER: needed with STEWARD_MATRIX_HOMESERVER"
    )


# -- alerts and encryption ----------------------------------------------------------------------


async def test_an_encrypted_room_works_when_e2ee_is_on(
    bots: MatrixBots, people: People, alice: Person
) -> None:
    """Alice's client has no encryption: she sees only ciphertext, which proves it is there."""
    owner = people("owner", e2ee=True)
    bots.start(matrix_e2ee="1", admins=f"{alice.user_id},{owner.user_id}")
    await owner.sync()
    room = await owner.create_room(bots.bot.user_id, alice.user_id, encrypted=True)
    await alice.join(room)
    await owner.wait(lambda: bots.bot.user_id in owner.members_joined(room), label="join")
    if owner.client.should_query_keys:
        await owner.client.keys_query()
    asked = await owner.say(room, "!ping")
    reply = await answer(owner, bots, room, asked)
    assert "pong" in reply.body.lower()
    await alice.wait(lambda: any(e.get("event_id") == reply.event_id
                                 for e in alice.timeline.get(room, [])))  # fmt: skip
    seen = {e["event_id"]: e["type"] for e in alice.timeline[room] if "event_id" in e}
    assert seen[asked] == seen[reply.event_id] == "m.room.encrypted"
    assert (bots.state_dir / "matrix-store").is_dir()


async def test_a_failed_reply_becomes_an_incident_and_an_alert_that_mentions_the_admins(
    bots: MatrixBots, alice: Person
) -> None:
    """In a room where only Alice may speak, the bot's reply is refused (M_FORBIDDEN). The
    admins hear of it in the rooms where the bot may speak, in an m.text that mentions them
    (so that it pings); ordinary replies are notices."""
    process = bots.start()
    room = await admin_room(bots, alice)
    muted = await alice.create_room(bots.bot.user_id, speakers_only=True)
    await alice.wait(lambda: bots.bot.user_id in alice.members_joined(muted), label="join")

    await alice.say(muted, "!ping")
    alert = await alice.wait(
        lambda: [m for m in alice.messages(room, bots.bot.user_id) if m.msgtype == "m.text"],
        label="the alert",
    )
    (message,) = alert
    assert alice.user_id in message.mentions
    assert alice.user_id in message.body
    found = re.search(r"Incident ([0-9a-f]{8})", message.body)
    assert found is not None, message.body
    assert "MatrixSendError" in message.body
    assert "Traceback" not in message.body
    await alice.wait(lambda: f"incident {found.group(1)}" in process.stderr, label="the log")
    assert alice.messages(muted, bots.bot.user_id) == []


async def test_an_alerts_buttons_become_commands_to_send(bots: MatrixBots, alice: Person) -> None:
    bots.start()
    room = await admin_room(bots, alice)
    asked = await alice.say(room, "!demo disk 93")
    reply = await answer(alice, bots, room, asked)
    short = re.search(r"!snooze ([0-9a-f]{6})", reply.body)
    assert short, reply.body
    assert f"!mute {short.group(1)} · !details {short.group(1)}" in reply.body
    snoozed = await answer(alice, bots, room, await alice.say(room, f"!snooze {short.group(1)}"))
    assert "no messages about it until" in snoozed.body


async def test_the_weekly_chart_is_an_inline_image(bots: MatrixBots, alice: Person) -> None:
    bots.start()
    room = await admin_room(bots, alice)
    await answer(alice, bots, room, await alice.say(room, "!demo disk 50"))
    await alice.say(room, "!report week")

    def chart() -> JSON | None:
        events = alice.timeline.get(room, [])
        return next((e for e in events if e.get("content", {}).get("msgtype") == "m.image"), None)

    image = await alice.wait(chart, label="the chart")
    assert image is not None
    info = image["content"]["info"]
    assert info["mimetype"] == "image/png"
    assert (info["w"], info["h"]) == (800, 400)
    assert image["content"]["url"].startswith("mxc://")

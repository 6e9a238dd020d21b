"""End to end on Matrix (real Synapse): a stolen chat account against the second factor and
lock-down. The code comes as ``!confirm CODE 123456``; a ✅ alone is not enough."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyotp
import pytest
from nio import AsyncClient, LoginResponse

from tests.e2e.matrix_harness import MatrixBots, Person, settle
from tests.e2e.second_factor import enroll, key_file, wrong_code
from tests.e2e.test_matrix import CODE, admin_room, prompt_for
from tests.support.synapse import RegisteredUser, Synapse, unique

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f eve"


@pytest.fixture
async def admins(synapse: Synapse) -> AsyncIterator[tuple[Person, Person]]:
    """Alice, an admin who enrols, and Olga, an operator."""
    made = [
        Person(synapse, synapse.register(unique(n), f"{n}-password")) for n in ("alice", "olga")
    ]
    yield made[0], made[1]
    for person in made:
        await person.close()


@pytest.fixture
def bots(synapse: Synapse, admins: tuple[Person, Person], tmp_path: Path) -> Iterator[MatrixBots]:
    alice, olga = admins
    bot: RegisteredUser = synapse.register(unique("steward"), "bot-password-Zq81")
    runner = MatrixBots(synapse, bot, tmp_path, admins=alice.user_id, operators=olga.user_id,
                        totp_key_file=str(key_file(tmp_path)))  # fmt: skip
    try:
        yield runner
    finally:
        runner.close()


def code_of(prompt_body: str) -> str:
    found = CODE.search(prompt_body)
    assert found is not None, prompt_body
    return found.group(1)


async def said(person: Person, bots: MatrixBots, room: str, text: str) -> None:
    await person.wait(lambda: person.find(room, bots.bot.user_id, text), label=text)


def refused(bots: MatrixBots) -> list[tuple[str, str]]:
    return [(str(c), str(r)) for c, r in bots.query(
        "SELECT command, result FROM audit_log WHERE event = 'refused' ORDER BY id")]  # fmt: skip


async def test_sshkey_add_runs_only_with_a_valid_fresh_code_of_the_requester(
    bots: MatrixBots, admins: tuple[Person, Person]
) -> None:
    alice, olga = admins
    totp: pyotp.TOTP = enroll(bots.env(), bots.cwd, alice.user_id)
    bots.start()
    room = await admin_room(bots, alice, olga)

    prompt = await prompt_for(alice, bots, room, f"!sshkey add {KEY}")
    short = code_of(prompt.body)
    assert f"Send !confirm {short} 123456 with your current 6-digit code" in prompt.body
    await alice.react(room, prompt.event_id, "✅")
    await said(alice, bots, room, "This needs your current 6-digit code.")
    await alice.say(room, f"!confirm {short} {wrong_code(totp)}")
    await said(alice, bots, room, "That code is wrong or used already; 4 tries left.")
    await olga.say(room, f"!confirm {short} {totp.now()}")  # Alice's code, from Olga
    await said(alice, bots, room, "can confirm this.")
    assert bots.count("jobs") == 0

    code = totp.now()
    await alice.say(room, f"!confirm {short} {code}")
    await said(alice, bots, room, "✅ Confirmed by")
    await said(alice, bots, room, "Press Keep")

    again = await prompt_for(alice, bots, room, f"!sshkey add {OTHER_KEY}")
    await alice.say(room, f"!confirm {code_of(again.body)} {code}")  # replayed
    await said(alice, bots, room, "That code is wrong or used already; 3 tries left.")
    aged = bots.execute("UPDATE confirmations SET expires_at = '2020-01-01 00:00:00.000000' "
                        "WHERE state = 'pending' AND command = 'sshkey add'")  # fmt: skip
    assert aged == 1
    await alice.say(room, f"!confirm {code_of(again.body)} {totp.now()}")
    await said(alice, bots, room, "This confirmation has expired.")

    assert bots.count("jobs") == 1
    rows = refused(bots)
    assert [result for command, result in rows if command == "sshkey add"] == [
        "no code", "wrong code", rows[2][1], "code used before", "expired",
    ]  # fmt: skip
    assert rows[2][1].startswith("Only ")
    assert rows[2][1].endswith(" can confirm this.")
    assert not any(code in str(row) for row in bots.query("SELECT args FROM audit_log"))


async def test_five_wrong_codes_lock_out_and_alert_and_lockdown_goes_on_and_off(
    bots: MatrixBots, admins: tuple[Person, Person]
) -> None:
    alice, olga = admins
    totp = enroll(bots.env(), bots.cwd, alice.user_id)
    bots.start()
    room = await admin_room(bots, alice, olga)

    await alice.say(room, "!lockdown")
    await said(alice, bots, room, "Lock-down is on: every command")
    await olga.say(room, "!restart nextcloud")
    await said(alice, bots, room, "nothing that changes the server runs.")
    lift = await prompt_for(alice, bots, room, "!lockdown off")
    await alice.say(room, f"!confirm {code_of(lift.body)} {totp.now()}")
    await said(alice, bots, room, "Lock-down is lifted")
    olgas = await prompt_for(olga, bots, room, "!restart nextcloud")
    assert "Waiting for" in olgas.body

    prompt = await prompt_for(alice, bots, room, "!rollback 43")
    short, wrong = code_of(prompt.body), wrong_code(totp)
    for left in (4, 3, 2, 1):
        await alice.say(room, f"!confirm {short} {wrong}")
        await said(alice, bots, room, f"{left} tries left.")
    await alice.say(room, f"!confirm {short} {wrong}")
    await said(alice, bots, room, "Too many wrong codes")
    await said(alice, bots, room, "gave 5 wrong codes and is locked out")  # the admins' alert
    await alice.say(room, f"!confirm {short} {totp.now()}")
    await said(alice, bots, room, "You are locked out of /rollback")

    assert bots.count("jobs", "kind = 'rollback'") == 0
    security = bots.query("SELECT command FROM audit_log WHERE event = 'security'")
    assert security == [("totp enroll",), ("lockout",)]
    assert ("restart", "lockdown") not in refused(bots)  # refused on request, not on confirm
    assert any(result.startswith("🔒 Lock-down is on") for _, result in refused(bots))


async def test_a_new_device_on_an_admins_account_is_told_to_the_admins_once(
    bots: MatrixBots, admins: tuple[Person, Person], synapse: Synapse, tmp_path: Path
) -> None:
    alice, _ = admins
    process = bots.start()
    room = await admin_room(bots, alice)
    await settle(1.0)  # the bot's first look at Alice's devices is the baseline

    login = AsyncClient(synapse.url, alice.user_id)
    logged_in = await login.login(alice.user.password, device_name="borrowed laptop")
    await login.close()
    assert isinstance(logged_in, LoginResponse), logged_in
    laptop = RegisteredUser(
        alice.user_id, alice.user.password, logged_in.access_token, logged_in.device_id
    )
    stolen = Person(synapse, laptop, store=tmp_path / "laptop")
    try:
        await stolen.sync()  # a client with encryption uploads its device keys
        await said(
            alice, bots, room, f"A new device signed in to the Matrix account of {alice.user_id}"
        )
    finally:
        await stolen.close()
    warning = alice.find(room, bots.bot.user_id, "A new device signed in")
    assert len(warning) == 1
    assert logged_in.device_id in warning[0].body
    assert "borrowed laptop" in warning[0].body

    assert bots.stop(process) == 0
    bots.start()  # a restart remembers what it has seen
    await alice.say(room, "!ping")
    await said(alice, bots, room, "pong")
    await settle(1.0)
    await alice.sync()
    assert len(alice.find(room, bots.bot.user_id, "A new device signed in")) == 1
    assert bots.query("SELECT command, args FROM audit_log WHERE event = 'security'") == [
        ("new device", f'["{logged_in.device_id}"]')
    ]

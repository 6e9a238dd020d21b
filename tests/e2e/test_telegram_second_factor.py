"""End to end on Telegram: a stolen chat account against the second factor and lock-down.

One admin (Alice) enrols on the shell; the code is a reply to the prompt. Every abuse case
checks that nothing ran and that the audit holds the row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import ALICE, BOB, OLGA, Steward, button_data, uid, wait_answer
from tests.e2e.harness import wait_message as said
from tests.e2e.second_factor import enroll, key_file, steward_cli, wrong_code
from tests.support.fake_telegram import BotMessage, FakeBotAPI

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f eve"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return key_file(tmp_path)


def prompt_for(fake: FakeBotAPI, user: dict[str, object], text: str) -> BotMessage:
    """Send a command and return the prompt it gets (the newest message with buttons)."""
    before = {m.message_id for m in fake.messages(uid(user))}
    fake.send_text(user, text)

    def new_prompt(api: FakeBotAPI) -> BotMessage | None:
        fresh = [m for m in api.messages(uid(user)) if m.message_id not in before and m.buttons]
        return fresh[-1] if fresh else None

    found = fake.wait_for(new_prompt)
    assert found is not None
    return found


def reply(fake: FakeBotAPI, user: dict[str, object], prompt: BotMessage, text: str) -> None:
    fake.send_text(user, text, uid(user) if prompt.chat_id == uid(user) else prompt.chat_id,
                   reply_to=prompt.message_id)  # fmt: skip


def refused(steward: Steward) -> list[tuple[str, str]]:
    return [(str(c), str(r)) for c, r in steward.query(
        "SELECT command, result FROM audit_log WHERE event = 'refused' ORDER BY id")]  # fmt: skip


def test_sshkey_add_runs_only_with_a_valid_fresh_code_of_the_requester(
    fake: FakeBotAPI, steward: Steward, key: Path
) -> None:
    totp = enroll(steward.env(totp_key_file=str(key)), steward.cwd, str(uid(ALICE)))
    steward.start(totp_key_file=str(key))

    prompt = prompt_for(fake, ALICE, f"/sshkey add {KEY}")
    assert "It needs the current 6-digit code." in (prompt.text or "")
    assert "Reply to this message with the code to confirm." in (prompt.text or "")
    query = fake.press(ALICE, prompt.message_id, button_data(prompt, "Confirm"))
    assert wait_answer(fake, query).text == "This needs your current 6-digit code."
    reply(fake, ALICE, prompt, wrong_code(totp))
    said(fake, uid(ALICE), "That code is wrong or used already; 4 tries left.")
    assert steward.count("jobs") == 0

    code = totp.now()
    reply(fake, ALICE, prompt, f"{code[:3]} {code[3:]}")  # as the app shows it
    said(fake, uid(ALICE), "✅ Confirmed by Alice.")
    said(fake, uid(ALICE), "Press Keep")

    again = prompt_for(fake, ALICE, f"/sshkey add {OTHER_KEY}")
    reply(fake, ALICE, again, code)  # the same code, replayed
    said(fake, uid(ALICE), "That code is wrong or used already; 3 tries left.")
    assert steward.count("jobs") == 1
    assert steward.query("SELECT state FROM confirmations WHERE id = 2") == [("pending",)]
    assert refused(steward) == [
        ("sshkey add", "no code"), ("sshkey add", "wrong code"), ("sshkey add", "code used before"),
    ]  # fmt: skip


def test_a_code_from_another_admin_or_after_expiry_runs_nothing(
    fake: FakeBotAPI, steward: Steward, key: Path
) -> None:
    env = steward.env(totp_key_file=str(key))
    alices = enroll(env, steward.cwd, str(uid(ALICE)))
    bobs = enroll(env, steward.cwd, str(uid(BOB)))
    steward.start(totp_key_file=str(key))

    group = -1001234567890
    fake.send_text(ALICE, "/rollback 43", group, "supergroup")
    prompt = fake.wait_for(lambda f: next((m for m in f.messages(group) if m.buttons), None))
    assert prompt is not None
    fake.send_text(BOB, alices.now(), group, "supergroup", reply_to=prompt.message_id)
    said(fake, group, "Only Alice can confirm this.")
    fake.send_text(ALICE, bobs.now(), group, "supergroup", reply_to=prompt.message_id)
    said(fake, group, "That code is wrong or used already; 4 tries left.")

    aged = steward.execute("UPDATE confirmations SET expires_at = '2020-01-01 00:00:00.000000'")
    assert aged == 1
    fake.send_text(ALICE, alices.now(), group, "supergroup", reply_to=prompt.message_id)
    said(fake, group, "This confirmation has expired. Send the command again.")
    assert steward.count("jobs") == 0
    assert refused(steward) == [
        ("rollback", "Only Alice can confirm this."), ("rollback", "wrong code"),
        ("rollback", "expired"),
    ]  # fmt: skip


def test_five_wrong_codes_lock_out_and_alert_and_lockdown_goes_on_and_off(
    fake: FakeBotAPI, steward: Steward, key: Path
) -> None:
    env = steward.env(totp_key_file=str(key))
    totp = enroll(env, steward.cwd, str(uid(ALICE)))
    steward.start(totp_key_file=str(key))

    fake.send_text(BOB, "/lockdown")
    said(fake, uid(BOB), "Lock-down is on")
    fake.send_text(OLGA, "/restart nextcloud")
    said(fake, uid(OLGA), "🔒 Lock-down is on (by Bob): nothing that changes the server runs.")
    fake.send_text(BOB, "/lockdown off")
    said(fake, uid(BOB), "/lockdown off needs a one-time code, and you have none.")
    lift = prompt_for(fake, ALICE, "/lockdown off")
    reply(fake, ALICE, lift, totp.now())
    said(fake, uid(ALICE), "Lock-down is lifted")
    prompt_for(fake, OLGA, "/restart nextcloud")  # asked again as usual
    fake.send_text(BOB, "/lockdown")
    said(fake, uid(BOB), "Lock-down is on", timeout=10)
    assert steward_cli(env, steward.cwd, "lockdown", "off").returncode == 0
    prompt_for(fake, OLGA, "/restart forgejo")

    prompt = prompt_for(fake, ALICE, "/rollback 43")
    wrong = wrong_code(totp)
    for left in (4, 3, 2, 1):
        reply(fake, ALICE, prompt, wrong)
        said(fake, uid(ALICE), f"{left} tries left.")
    reply(fake, ALICE, prompt, wrong)
    said(fake, uid(ALICE), "Too many wrong codes: destructive commands are locked until")
    said(fake, uid(BOB), "Alice (telegram) gave 5 wrong codes")  # the other admins are told
    reply(fake, ALICE, prompt, totp.now())
    said(fake, uid(ALICE), "You are locked out of /rollback after wrong codes")

    assert steward.count("jobs", "kind = 'rollback'") == 0
    security = steward.query("SELECT command, result FROM audit_log WHERE event = 'security'")
    assert [row[0] for row in security] == ["totp enroll", "lockdown off", "lockout"]
    assert security[2][1].startswith("5 wrong codes; locked until ")
    assert ("restart", "🔒 Lock-down is on (by Bob): nothing that changes the server runs.") in (
        refused(steward)
    )
